/* expert_rewrite.c - a model folder with another set of routed experts (expert_rewrite.h).
 *
 * The output is described as a list of tensors, each with a recipe for its bytes (copy, gather router
 * rows, copy or slice an input expert, convert merged f32 weights), in the order they lie in the file:
 * every non-expert tensor in the input's order, then per MoE layer its experts one after another
 * (gate, up, down and any other per-expert tensor back to back, so that the on-disk expert store
 * reads an expert in one go), then the layer's fused tensors and slot map. Bytes are produced one
 * tensor at a time by the safetensors writer's callback: a model never needs to be in memory. */
#include "tools/expert_rewrite.h"
#include "core/alloc.h"
#include "core/dtype_traits.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/out_dir.h"
#include "io/json.h"
#include "io/st_writer.h"
#include "tools/quantize.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { COPY, ROWS, SLICES, MERGED, FUSED_MERGED, MAP };

typedef struct out_t {
    char *name;               /* owned */
    moe_dtype dtype;
    int ndim;
    int64_t shape[MOE_MAX_DIMS];
    uint64_t nbytes;
    int kind;
    const moe_tensor *src;
    const int *idx;           /* ROWS, SLICES: source rows / slices; MAP: the map */
    int n_idx;
    int axis;                 /* ROWS: the dimension that runs over the experts */
    int moe_i, j, mat;        /* MERGED: layer, stored expert, matrix 0 gate 1 up 2 down; FUSED_MERGED: mat 0 gate_up 1 down */
} out_t;

typedef struct rw {
    moe_model *m;
    const moe_expert_plan *p;
    out_t *t;
    int n, cap;
    unsigned char *buf;       /* bytes of the tensor being written */
    size_t buf_cap;
    float *g, *u, *d;         /* merged expert cache */
    int cached_i, cached_j;
    int first;                /* index of the first tensor of the file being written */
    uint64_t done, total;
} rw;

static moe_status push(rw *w, const char *name, const moe_tensor *src, int kind) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 256;
        out_t *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t) return moe_fail(MOE_ENOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    out_t *o = &w->t[w->n];
    memset(o, 0, sizeof *o);
    if (!(o->name = strdup(name))) return moe_fail(MOE_ENOMEM, "out of memory");
    w->n++;
    o->kind = kind;
    o->src = src;
    if (src) {
        o->dtype = src->dtype;
        o->ndim = src->ndim;
        memcpy(o->shape, src->shape, sizeof o->shape);
        o->nbytes = src->nbytes;
    }
    return MOE_OK;
}

/* "model.layers.<l>.<rest>" -> l and rest, or -1. */
static int layer_of(const char *name, const char **rest) {
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    const char *p = name + sizeof pre - 1;
    long l = 0;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9' && l < 1000000) l = l * 10 + (*p++ - '0');
    if (*p != '.') return -1;
    *rest = p + 1;
    return (int)l;
}

/* "<int>.<suffix>" -> int and suffix, or -1. */
static int expert_of(const char *s, const char **suffix) {
    long e = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9' && e < 10000000) e = e * 10 + (*p++ - '0');
    if (*p != '.' || p == s) return -1;
    *suffix = p + 1;
    return (int)e;
}

/* The first candidate (the family's spellings, or def) present as model.layers.<l>.<blk>.<cand>, into
 * out; "" if none is. As model.c finds them. */
static int find_in_block(moe_weights *W, char *out, size_t cap, int l, const char *blk, const char *const *cands,
                         const char *def) {
    const char *one[2] = {def, NULL};
    if (!cands[0]) cands = one;
    for (int i = 0; i < 3 && cands[i]; i++) {
        snprintf(out, cap, "model.layers.%d.%s.%s", l, blk, cands[i]);
        if (moe_weights_has(W, out)) return i + 1;
    }
    out[0] = 0;
    return 0;
}

static int is_identity(const int *v, int n) {
    for (int i = 0; i < n; i++)
        if (v[i] != i) return 0;
    return 1;
}

moe_status moe_expert_rewrite_check(moe_model *m) {
    moe_weights *W = m->weights;
    if (m->cfg.n_stored_experts > 0)
        return moe_fail(MOE_EUSAGE, "%s: the model is already a merged checkpoint (moe_expert_slots); compress the original", W->dir);
    if (m->cfg.prefix)   /* a multimodal folder (Llama 4): its text model's tensors are under a prefix */
        return moe_fail(MOE_EUSAGE, "%s: the text model's tensors are under \"%s\" (a multimodal checkpoint); rewriting its "
                        "experts is not supported", W->dir, m->cfg.prefix);
    for (int k = 0; k < W->n; k++)
        if (moe_dtype_is_quant(W->list[k]->dtype))
            return moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" is %s; prune or merge the float model, then quantize", W->dir,
                            W->list[k]->name, moe_dtype_name(W->list[k]->dtype));
    return MOE_OK;
}

moe_status moe_expert_out_dir(moe_model *m, const char *out_dir) {
    char rin[PATH_MAX], rout[PATH_MAX];
    struct stat sb;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) return moe_fail(MOE_EIO, "%s: cannot create folder: %s", out_dir, strerror(errno));
    if (stat(out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return moe_fail(MOE_EUSAGE, "%s: not a folder", out_dir);
    if (access(out_dir, W_OK) != 0) return moe_fail(MOE_EIO, "%s: folder is not writable", out_dir);
    if (!realpath(m->weights->dir, rin) || !realpath(out_dir, rout)) return moe_fail(MOE_EIO, "%s: cannot resolve path", out_dir);
    if (!strcmp(rin, rout)) return moe_fail(MOE_EUSAGE, "%s: the output folder must differ from the model folder", out_dir);
    return MOE_OK;
}

/* ---- planning the output ----------------------------------------------------------------------- */

typedef struct layer_in {
    int l, i;                 /* transformer layer, MoE index */
    const char *blk;
    char prefix[96];          /* "model.layers.<l>.<blk>." */
    char router[256], bias[256], fused_gu[256], fused_dn[256];   /* full names, "" where absent */
    char rbias[256];          /* the router's own bias (gpt-oss's router.bias), "" where absent */
    int n_suffix;
    const char *suffix[16];   /* per-expert tensor names after "experts.<e>." */
} layer_in;

/* Where layer l keeps its router, score bias and fused experts (model.c's binding, by the family's names). */
static void locate(moe_model *m, layer_in *L) {
    const moe_config *c = &m->cfg;
    moe_weights *W = m->weights;
    L->blk = c->moe_block;
    if (!find_in_block(W, L->router, sizeof L->router, L->l, L->blk, c->router_names, "gate.weight") &&
        find_in_block(W, L->router, sizeof L->router, L->l, "mlp", c->router_names, "gate.weight"))
        L->blk = "mlp";
    snprintf(L->prefix, sizeof L->prefix, "model.layers.%d.%s.", L->l, L->blk);
    L->bias[0] = 0;
    if (c->has_score_bias)
        find_in_block(W, L->bias, sizeof L->bias, L->l, L->blk, c->score_bias_names, "gate.e_score_correction_bias");
    L->rbias[0] = 0;
    size_t rn = strlen(L->router), wn = strlen(".weight");
    if (c->router_bias && rn > wn && !strcmp(L->router + rn - wn, ".weight"))
        snprintf(L->rbias, sizeof L->rbias, "%.*s.bias", (int)(rn - wn), L->router);
    int f = find_in_block(W, L->fused_gu, sizeof L->fused_gu, L->l, L->blk, c->fused_gate_up_names, "experts.gate_up_proj");
    L->fused_dn[0] = 0;
    if (f) snprintf(L->fused_dn, sizeof L->fused_dn, "model.layers.%d.%s.%s", L->l, L->blk,
                    c->fused_down_names[0] ? c->fused_down_names[f - 1] : "experts.down_proj");
}

static moe_status plan(rw *w, layer_in *li, int n_moe, int E_in) {
    moe_model *m = w->m;
    const moe_expert_plan *p = w->p;
    moe_weights *W = m->weights;
    const moe_config *c = &m->cfg;
    char name[512];
    if (p->merged && c->experts_in_out)   /* the merged experts would be written [out][in] */
        return moe_fail(MOE_EUSAGE, "%s: %s stores its experts [in][out]; merging them is not supported (pruning is)", W->dir,
                        c->model_type);
    /* every tensor of the input, classified */
    for (int k = 0; k < W->n; k++) {
        const moe_tensor *t = W->list[k];
        if (moe_dtype_is_quant(t->dtype))
            return moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" is %s; prune or merge the float model, then quantize", W->dir, t->name,
                            moe_dtype_name(t->dtype));
        const char *rest;
        int l = layer_of(t->name, &rest), i = -1;
        for (int x = 0; l >= 0 && x < n_moe; x++)
            if (li[x].l == l) i = x;
        layer_in *L = i >= 0 ? &li[i] : NULL;
        if (!L) { MOE_TRY(push(w, t->name, t, COPY)); continue; }
        const int *rows = p->rows + (size_t)i * p->n_slots;
        int is_router = !strcmp(t->name, L->router);
        int is_bias = (L->bias[0] && !strcmp(t->name, L->bias)) || (L->rbias[0] && !strcmp(t->name, L->rbias));
        if (is_router || is_bias) {
            if (p->n_slots == E_in && is_identity(rows, p->n_slots)) { MOE_TRY(push(w, t->name, t, COPY)); continue; }
            /* the router's rows, or the bias's entries ([E] or ERNIE's [1][E]) */
            int axis = is_bias && t->ndim == 2 && t->shape[0] == 1 ? 1 : 0;
            if (t->shape[axis] != E_in)
                return moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" does not have one row per expert: router %s cannot lose experts",
                                W->dir, t->name, c->router);
            MOE_TRY(push(w, t->name, t, ROWS));
            out_t *o = &w->t[w->n - 1];
            o->axis = axis;
            o->shape[axis] = p->n_slots;
            o->nbytes = t->nbytes / (uint64_t)E_in * (uint64_t)p->n_slots;
            o->idx = rows;
            o->n_idx = p->n_slots;
            continue;
        }
        if (!strcmp(t->name, L->fused_gu) || !strcmp(t->name, L->fused_dn)) continue;   /* with the layer's experts */
        size_t pl = strlen(L->prefix);
        if (strncmp(t->name, L->prefix, pl) || strncmp(t->name + pl, "experts.", 8)) {   /* shared experts, gates, norms */
            MOE_TRY(push(w, t->name, t, COPY));
            continue;
        }
        const char *suffix;
        int e = expert_of(t->name + pl + 8, &suffix);
        if (e < 0) continue;   /* other tensors with one slice per expert: with the layer's experts */
        if (e >= E_in) return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" names expert %d of %d", W->dir, t->name, e, E_in);
        if (e != 0) continue;  /* per-expert tensors: their names are taken from expert 0 */
        if (L->n_suffix == 16) return moe_fail(MOE_EUSAGE, "%s: more than 16 tensors per expert", W->dir);
        L->suffix[L->n_suffix++] = suffix;
    }
    /* the experts of each MoE layer */
    for (int i = 0; i < n_moe; i++) {
        layer_in *L = &li[i];
        const char *mats[3] = {c->expert_gate, c->expert_up, c->expert_down};
        if (p->merged && L->n_suffix) {
            int ok = L->n_suffix == 3;
            for (int s = 0; ok && s < 3; s++) {
                int found = 0;
                for (int q = 0; q < 3; q++) {
                    snprintf(name, sizeof name, "%s.weight", mats[q]);
                    found |= !strcmp(L->suffix[s], name);
                }
                ok = found;
            }
            if (!ok) return moe_fail(MOE_EUSAGE, "%s: layer %d's experts have tensors besides %s, %s and %s (biases?): "
                                     "merging them is not supported", W->dir, L->l, mats[0], mats[1], mats[2]);
        }
        for (int j = 0; j < p->n_store && L->n_suffix; j++) {
            int from = p->src ? p->src[(size_t)i * p->n_store + j] : 0;
            int n_s = p->merged ? 3 : L->n_suffix;
            for (int s = 0; s < n_s; s++) {
                char suf[128];
                if (p->merged) snprintf(suf, sizeof suf, "%s.weight", mats[s]);
                else snprintf(suf, sizeof suf, "%s", L->suffix[s]);
                snprintf(name, sizeof name, "%sexperts.%d.%s", L->prefix, from, suf);
                int k = moe_strmap_gets(&W->map, name);
                if (k < 0) return moe_fail(MOE_EINPUT, "%s: missing tensor \"%s\"", W->source, name);
                const moe_tensor *t = W->list[k];
                snprintf(name, sizeof name, "%sexperts.%d.%s", L->prefix, j, suf);
                MOE_TRY(push(w, name, t, p->merged ? MERGED : COPY));
                out_t *o = &w->t[w->n - 1];
                o->moe_i = i;
                o->j = j;
                o->mat = s;
                if (p->merged && (t->ndim != 2 || !moe_dtype_traits_of(t->dtype)->quantize || !moe_dtype_traits_of(t->dtype)->to_f32))
                    return moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" (%s) cannot be merged", W->dir, t->name, moe_dtype_name(t->dtype));
            }
        }
        /* fused tensors (experts.gate_up_proj / down_proj, granite's input_linear / output_linear) and any
         * other "experts.<name>" tensor with one slice per expert */
        for (int k = 0; k < W->n; k++) {
            const moe_tensor *t = W->list[k];
            size_t pl = strlen(L->prefix);
            const char *suffix;
            int fm = !strcmp(t->name, L->fused_gu) ? 0 : L->fused_dn[0] && !strcmp(t->name, L->fused_dn) ? 1 : -1;
            if (fm < 0 && (strncmp(t->name, L->prefix, pl) || strncmp(t->name + pl, "experts.", 8) ||
                           expert_of(t->name + pl + 8, &suffix) >= 0))
                continue;
            if (t->ndim < 1 || t->shape[0] != E_in)
                return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" does not hold one slice per expert (%d)", W->dir, t->name, E_in);
            if (p->merged && (fm < 0 || t->ndim != 3 || !moe_dtype_traits_of(t->dtype)->quantize))
                return moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" cannot be merged (only the fused gate/up and down projections)",
                                W->dir, t->name);
            MOE_TRY(push(w, t->name, t, p->merged ? FUSED_MERGED : SLICES));
            out_t *o = &w->t[w->n - 1];
            o->shape[0] = p->n_store;
            o->nbytes = t->nbytes / (uint64_t)E_in * (uint64_t)p->n_store;
            o->idx = p->src ? p->src + (size_t)i * p->n_store : NULL;
            o->n_idx = p->n_store;
            o->moe_i = i;
            o->mat = fm;
        }
        if (p->map) {
            snprintf(name, sizeof name, "%smoe_expert_map", L->prefix);
            MOE_TRY(push(w, name, NULL, MAP));
            out_t *o = &w->t[w->n - 1];
            o->dtype = MOE_I32;
            o->ndim = 1;
            o->shape[0] = p->n_slots;
            o->nbytes = 4 * (uint64_t)p->n_slots;
            o->idx = p->map + (size_t)i * p->n_slots;
            o->n_idx = p->n_slots;
        }
    }
    return MOE_OK;
}

/* ---- bytes ------------------------------------------------------------------------------------- */

static moe_status need_buf(rw *w, size_t n) {
    if (n <= w->buf_cap) return MOE_OK;
    moe_free(w->buf);
    w->buf_cap = 0;
    if (!(w->buf = moe_alloc(n))) return moe_fail(MOE_ENOMEM, "out of memory for %zu bytes", n);
    w->buf_cap = n;
    return MOE_OK;
}

static moe_status merged_expert(rw *w, int i, int j) {
    if (w->cached_i == i && w->cached_j == j) return MOE_OK;
    w->cached_i = -1;
    MOE_TRY(w->p->merged(w->p->user, i, j, w->g, w->u, w->d));
    w->cached_i = i;
    w->cached_j = j;
    return MOE_OK;
}

/* f32 rows to dtype dt. */
static void write_rows(moe_dtype dt, const float *x, int64_t rows, int64_t cols, unsigned char *out) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(dt);
    size_t rb = moe_dtype_row_bytes(dt, cols);
    for (int64_t r = 0; r < rows; r++) tr->quantize(x + r * cols, cols, out + (size_t)r * rb);
}

static moe_status data_of(void *user, int k, const void **out) {
    rw *w = user;
    const out_t *o = &w->t[w->first + k];
    int ff = w->m->cfg.moe_intermediate, d = w->m->cfg.hidden;
    switch (o->kind) {
    case COPY: *out = o->src->data; break;
    case ROWS: case SLICES: {   /* gather along the experts' axis: outer blocks of n rows of `each` bytes */
        const moe_tensor *t = o->src;
        size_t outer = 1, each = moe_dtype_size(t->dtype);
        for (int a = 0; a < o->axis; a++) outer *= (size_t)t->shape[a];
        for (int a = o->axis + 1; a < t->ndim; a++) each *= (size_t)t->shape[a];
        size_t in_block = each * (size_t)t->shape[o->axis], out_block = each * (size_t)o->n_idx;
        MOE_TRY(need_buf(w, o->nbytes));
        for (size_t b = 0; b < outer; b++)
            for (int r = 0; r < o->n_idx; r++)
                memcpy(w->buf + b * out_block + (size_t)r * each,
                       (const char *)t->data + b * in_block + (size_t)(o->idx ? o->idx[r] : r) * each, each);
        *out = w->buf;
        break;
    }
    case MERGED:
        MOE_TRY(merged_expert(w, o->moe_i, o->j));
        MOE_TRY(need_buf(w, o->nbytes));
        write_rows(o->dtype, o->mat == 0 ? w->g : o->mat == 1 ? w->u : w->d, o->shape[0], o->shape[1], w->buf);
        *out = w->buf;
        break;
    case FUSED_MERGED: {
        MOE_TRY(need_buf(w, o->nbytes));
        size_t slice = o->nbytes / (size_t)o->shape[0], half = slice / 2;
        for (int j = 0; j < o->shape[0]; j++) {
            MOE_TRY(merged_expert(w, o->moe_i, j));
            unsigned char *dst = w->buf + (size_t)j * slice;
            if (o->mat == 0) {  /* gate rows, then up rows */
                write_rows(o->dtype, w->g, ff, d, dst);
                write_rows(o->dtype, w->u, ff, d, dst + half);
            } else {
                write_rows(o->dtype, w->d, d, ff, dst);
            }
        }
        *out = w->buf;
        break;
    }
    case MAP:
        MOE_TRY(need_buf(w, o->nbytes));
        for (int s = 0; s < o->n_idx; s++) {
            int32_t v = o->idx[s];
            memcpy(w->buf + 4 * (size_t)s, &v, 4);
        }
        *out = w->buf;
        break;
    }
    w->done += o->nbytes;
    FILE *log = w->p->log;
    if (log && isatty(fileno(log))) {
        fprintf(log, "\rwriting %3.0f%%", 100.0 * (double)w->done / (double)(w->total ? w->total : 1));
        fflush(log);
    }
    return MOE_OK;
}

/* ---- files ------------------------------------------------------------------------------------- */

/* Skip one JSON value starting at p (the text was validated by the strict parser); returns its end. */
static const char *skip_value(const char *p) {
    int depth = 0;
    do {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1]) p++;
            if (*p) p++;
        } else if (*p == '{' || *p == '[') {
            depth++;
            p++;
        } else if (*p == '}' || *p == ']') {
            depth--;
            p++;
        } else if (depth == 0) {   /* a number or a literal */
            while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') p++;
        } else {
            p++;
        }
    } while (*p && depth > 0);
    return p;
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

/* config.json with the expert count (and "moe_expert_slots") changed, every other byte as it was:
 * re-printing the whole object would turn 0.0 into 0, which transformers 5 refuses for float fields. */
static moe_status write_config(moe_model *m, const char *out_dir, const moe_expert_plan *p) {
    char in[PATH_MAX + 32], out[PATH_MAX + 32];
    snprintf(in, sizeof in, "%s/config.json", m->weights->dir);
    snprintf(out, sizeof out, "%s/config.json", out_dir);
    cJSON *root;
    MOE_TRY(moe_json_parse_file(in, 16u << 20, &root));   /* validates the text the patcher walks */
    static const char *keys[] = {"num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"};
    int found = 0;
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) found |= moe_json_has(root, keys[k]);
    cJSON_Delete(root);
    const char *add_key = NULL;
    if (!found) {   /* the family's default count: write its own key */
        static const char *const fam[][2] = {
            {"mixtral", "num_local_experts"}, {"granitemoe", "num_local_experts"}, {"granitemoeshared", "num_local_experts"},
            {"phimoe", "num_local_experts"}, {"minimax_m2", "num_local_experts"}, {"qwen2_moe", "num_experts"},
            {"qwen3_moe", "num_experts"}, {"olmoe", "num_experts"}, {"deepseek_v2", "n_routed_experts"},
            {"deepseek_v3", "n_routed_experts"}, {"dots1", "n_routed_experts"}, {"glm4_moe", "n_routed_experts"},
            {"ernie4_5_moe", "moe_num_experts"}};
        const char *mt = m->cfg.model_type;
        for (size_t k = 0; k < sizeof fam / sizeof *fam; k++)
            if (!strcmp(mt, fam[k][0])) add_key = fam[k][1];
        if (!add_key) return moe_fail(MOE_EUSAGE, "%s: no expert count key to rewrite for model_type %s", in, mt);
    }
    char *text;
    size_t len;
    MOE_TRY(moe_read_file(in, 16u << 20, &text, &len));
    moe_atomic_file af;
    moe_status st = moe_atomic_open(&af, out);
    if (st) { free(text); return st; }
    FILE *f = af.f;
    const char *q = skip_ws(text), *from = text;   /* (merged inputs, with "moe_expert_slots", were refused) */
    if (*q != '{') st = moe_fail(MOE_EINPUT, "%s: not a JSON object", in);
    else q = skip_ws(q + 1);
    while (!st && *q == '"') {   /* each top-level member: "key": value */
        const char *key = q, *key_end = skip_value(q), *colon = skip_ws(key_end), *val = skip_ws(colon + 1);
        const char *val_end = skip_value(val), *next = skip_ws(val_end);
        size_t kl = (size_t)(key_end - key) - 2;
        int is_count = 0;
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            is_count |= strlen(keys[k]) == kl && !strncmp(key + 1, keys[k], kl);
        if (is_count) {
            fwrite(from, 1, (size_t)(val - from), f);
            fprintf(f, "%d", p->n_store);
            from = val_end;
        }
        if (*next != ',') break;
        q = skip_ws(next + 1);
    }
    if (!st) {
        const char *close = strrchr(from, '}');
        if (!close) st = moe_fail(MOE_EINPUT, "%s: not a JSON object", in);
        else {
            const char *end = close;   /* trailing whitespace before '}' stays after the new members */
            while (end > from && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t')) end--;
            fwrite(from, 1, (size_t)(end - from), f);
            int empty = end > text && end[-1] == '{';
            if (add_key) { fprintf(f, "%s\n  \"%s\": %d", empty ? "" : ",", add_key, p->n_store); empty = 0; }
            if (p->map) fprintf(f, "%s\n  \"moe_expert_slots\": %d", empty ? "" : ",", p->n_slots);
            fputs(end, f);
        }
    }
    free(text);
    if (st) { moe_atomic_abort(&af); return st; }
    return moe_atomic_commit(&af);
}

static moe_status write_text(const char *dir, const char *name, const char *text) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    moe_atomic_file af;
    MOE_TRY(moe_atomic_open(&af, path));
    fputs(text, af.f);
    return moe_atomic_commit(&af);
}

moe_status moe_expert_rewrite(moe_model *m, const char *out_dir, const moe_expert_plan *p) {
    const moe_config *c = &m->cfg;
    MOE_TRY(moe_expert_out_dir(m, out_dir));
    MOE_TRY(moe_expert_rewrite_check(m));
    /* the whole folder is staged and swapped in at the end (src/io/out_dir.h), under its lock */
    moe_outdir od;
    MOE_TRY(moe_outdir_open(&od, "OUT", out_dir));
    moe_status ost = moe_outdir_begin(&od);
    if (ost) { moe_outdir_close(&od); return ost; }
    const char *stage = od.write;
    int n_moe = 0;
    for (int l = 0; l < c->n_layers; l++) n_moe += c->ffn_kind[l] == MOE_FFN_MOE;
    layer_in *li = calloc((size_t)n_moe + 1, sizeof *li);
    rw w = {0};
    w.m = m;
    w.p = p;
    w.cached_i = -1;
    moe_status st = li ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
    for (int l = 0, i = 0; !st && l < c->n_layers; l++) {
        if (c->ffn_kind[l] != MOE_FFN_MOE) continue;
        li[i].l = l;
        li[i].i = i;
        locate(m, &li[i]);
        i++;
    }
    if (!st) st = plan(&w, li, n_moe, c->n_experts);
    size_t ffd = (size_t)c->moe_intermediate * c->hidden;
    if (!st && p->merged && (!(w.g = moe_alloc(ffd * 4)) || !(w.u = moe_alloc(ffd * 4)) || !(w.d = moe_alloc(ffd * 4))))
        st = moe_fail(MOE_ENOMEM, "out of memory");
    /* entries and shards */
    moe_st_entry *e = st ? NULL : calloc((size_t)w.n + 1, sizeof *e);
    if (!st && !e) st = moe_fail(MOE_ENOMEM, "out of memory");
    for (int k = 0; !st && k < w.n; k++) {
        const out_t *o = &w.t[k];
        e[k].name = o->name;
        e[k].dtype = moe_dtype_traits_of(o->dtype)->st_name;
        e[k].ndim = o->ndim;
        memcpy(e[k].shape, o->shape, sizeof e[k].shape);
        e[k].nbytes = o->nbytes;
        w.total += o->nbytes;
        if (!e[k].dtype) st = moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" has a dtype safetensors cannot hold", m->weights->dir, o->name);
    }
    int64_t shard = p->shard_bytes > 0 ? p->shard_bytes : (int64_t)4 << 30;
    int n_shards = 1;
    int *shard_of = st ? NULL : malloc(sizeof(int) * ((size_t)w.n + 1));
    if (!st && !shard_of) st = moe_fail(MOE_ENOMEM, "out of memory");
    uint64_t acc = 0;
    for (int k = 0, s = 0; !st && k < w.n; k++) {
        if (acc > 0 && acc + e[k].nbytes > (uint64_t)shard) { s++; acc = 0; }
        acc += e[k].nbytes;
        shard_of[k] = s;
        n_shards = s + 1;
    }
    char path[PATH_MAX + 64];
    cJSON *index = NULL, *wm = NULL;
    if (!st && n_shards > 1) {
        index = cJSON_CreateObject();
        cJSON *meta = index ? cJSON_AddObjectToObject(index, "metadata") : NULL;
        if (meta) cJSON_AddNumberToObject(meta, "total_size", (double)w.total);
        wm = index ? cJSON_AddObjectToObject(index, "weight_map") : NULL;
        if (!wm) st = moe_fail(MOE_ENOMEM, "out of memory");
    }
    for (int s = 0, k0 = 0; !st && s < n_shards; s++) {
        int k1 = k0;
        while (k1 < w.n && shard_of[k1] == s) k1++;
        char file[64];
        if (n_shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        snprintf(path, sizeof path, "%s/%s", stage, file);
        for (int k = k0; wm && k < k1; k++) cJSON_AddStringToObject(wm, e[k].name, file);
        const char *mk[1] = {"format"}, *mv[1] = {"pt"};
        w.first = k0;
        st = moe_st_write(path, e + k0, k1 - k0, mk, mv, 1, data_of, &w);
        k0 = k1;
    }
    if (p->log && isatty(fileno(p->log))) fprintf(p->log, "\r");
    if (!st && index) {
        char *text = cJSON_Print(index);
        st = text ? write_text(stage, "model.safetensors.index.json", text) : moe_fail(MOE_ENOMEM, "out of memory");
        free(text);
    }
    cJSON_Delete(index);
    /* (weight files of an earlier output are not carried into the new folder: they are the model's own) */
    if (!st) st = moe_copy_model_files(m->weights->dir, stage);
    if (!st) st = write_config(m, stage, p);
    if (!st && p->report) st = write_text(stage, "moe_compression.json", p->report);
    if (!st) st = moe_outdir_commit(&od);
    moe_outdir_close(&od);
    if (!st && p->log)
        fprintf(p->log, "wrote %s: %d MoE layers of %d experts (%d router slots), %.1f MiB of tensors in %d file%s\n", out_dir,
                n_moe, p->n_store, p->n_slots, (double)w.total / 1048576.0, n_shards, n_shards > 1 ? "s" : "");
    for (int k = 0; k < w.n; k++) free(w.t[k].name);
    free(w.t);
    free(e);
    free(shard_of);
    free(li);
    moe_free(w.buf); moe_free(w.g); moe_free(w.u); moe_free(w.d);
    return st;
}
