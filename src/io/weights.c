/* weights.c - open a model folder's safetensors files and index their tensors by name. */
#include "io/weights.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "io/quant_meta.h"
#include "core/dtype_traits.h"
#include "core/ggml_types.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static moe_status add_file(moe_weights *w, const char *fname) {
    for (int i = 0; i < w->n_files; i++)
        if (strcmp(strrchr(w->files[i]->path, '/') + 1, fname) == 0) return MOE_OK;
    char *path = join(w->dir, fname);
    if (!path) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_st_file *f;
    moe_status st = moe_st_open_ex(path, w->in_memory, &f);
    free(path);
    if (st != MOE_OK) return st;
    if ((st = moe_quant_meta_apply(f, f->map, f->size)) != MOE_OK) { moe_st_close(f); return st; }
    moe_st_file **nf = realloc(w->files, sizeof *nf * (size_t)(w->n_files + 1));
    if (!nf) { moe_st_close(f); return moe_fail(MOE_ENOMEM, "out of memory"); }
    w->files = nf;
    w->files[w->n_files++] = f;
    return MOE_OK;
}

static int safe_shard_name(const char *s) {
    if (!s[0] || strchr(s, '/') || strchr(s, '\\') || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    size_t n = strlen(s);
    return n > 12 && strcmp(s + n - 12, ".safetensors") == 0;
}

static moe_status open_index(moe_weights *w, const char *index_path, cJSON **root_out) {
    cJSON *root;
    MOE_TRY(moe_json_parse_file(index_path, 256u << 20, &root));
    *root_out = root;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) return moe_fail(MOE_EINPUT, "%s: \"weight_map\" missing or not an object", index_path);
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !safe_shard_name(e->valuestring))
            return moe_fail(MOE_EINPUT, "%s: weight_map entry \"%.100s\" must name a .safetensors file in the folder",
                            index_path, e->string);
        MOE_TRY(add_file(w, e->valuestring));
    }
    if (w->n_files == 0) return moe_fail(MOE_EINPUT, "%s: weight_map is empty", index_path);
    return MOE_OK;
}

static moe_status build_table(moe_weights *w) {
    int n = 0;
    for (int i = 0; i < w->n_files; i++) n += w->files[i]->n;
    w->n = n;
    w->list = calloc((size_t)n + 1, sizeof *w->list);
    w->file_of = calloc((size_t)n + 1, sizeof *w->file_of);
    w->used = calloc((size_t)n + 1, 1);
    if (!w->list || !w->file_of || !w->used || moe_strmap_init(&w->map, (size_t)n))
        return moe_fail(MOE_ENOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < w->n_files; i++)
        for (int j = 0; j < w->files[i]->n; j++, k++) {
            moe_tensor *t = &w->files[i]->tensors[j];
            w->list[k] = t;
            w->file_of[k] = i;
            int r = moe_strmap_put(&w->map, t->name, strlen(t->name), k);
            if (r < 0) return moe_fail(MOE_ENOMEM, "out of memory");
            if (r > 0)
                return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\" also appears in %s", w->files[i]->path, t->name,
                                w->files[w->file_of[moe_strmap_gets(&w->map, t->name)]]->path);
        }
    return MOE_OK;
}

/* ---- quantized weights stored as two tensors ------------------------------------------------
 * FP8 checkpoints (DeepSeek-V3/R1, Kimi-K2): "X.weight" F8_E4M3 [.., rows, cols] with
 * "X.weight_scale_inv" F32/BF16/F16 [.., ceil(rows/128), cols/128], w = e4m3 * scale per 128 x 128
 * tile. MXFP4 checkpoints (gpt-oss): "X_blocks" U8 [.., rows, G, 16] with "X_scales" U8 [.., rows, G].
 * Each pair becomes one tensor of a block type (X.weight as f8_e4m3_b128, X as mxfp4) whose rows are
 * built in owned memory (core/ggml_types.h), and the partner disappears from the table; the values
 * stay 8 or 4 bits. */

typedef struct { int file, idx; } tref;

static moe_status own(moe_weights *w, void *p) {
    void **no = realloc(w->owned, sizeof *no * (size_t)(w->n_owned + 1));
    if (!no) { moe_free(p); return moe_fail(MOE_ENOMEM, "out of memory"); }
    w->owned = no;
    w->owned[w->n_owned++] = p;
    return MOE_OK;
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n > m && !strcmp(s + n - m, suf);
}

static moe_status pair_fp8(moe_weights *w, const char *path, moe_tensor *t, const moe_tensor *sc) {
    int nd = t->ndim;
    if (nd < 2 || nd > 3 || sc->ndim != nd)
        return moe_fail(MOE_EINPUT, "%s: FP8 tensor \"%s\" must be 2-D or 3-D with a scale of as many dimensions", path, t->name);
    int64_t rows = t->shape[nd - 2], cols = t->shape[nd - 1], lead = nd == 3 ? t->shape[0] : 1;
    int64_t sr = (rows + 127) / 128, scn = cols / 128;
    if (cols % 128 || sc->shape[nd - 2] != sr || sc->shape[nd - 1] != scn || (nd == 3 && sc->shape[0] != lead))
        return moe_fail(MOE_EINPUT, "%s: \"%s\" [%lld, %lld] needs 128 x 128 tile scales [%lld, %lld] with whole tiles across its rows; "
                        "\"%s\" does not fit", path, t->name, (long long)rows, (long long)cols, (long long)sr, (long long)scn, sc->name);
    if (sc->dtype != MOE_F32 && sc->dtype != MOE_BF16 && sc->dtype != MOE_F16)
        return moe_fail(MOE_EINPUT, "%s: scale \"%s\" is %s (F32, BF16 or F16)", path, sc->name, moe_dtype_name(sc->dtype));
    size_t rb = moe_dtype_row_bytes(MOE_F8_E4M3_B128, cols);
    uint8_t *buf = moe_alloc(rb * (size_t)(rows * lead) + 1);
    float *s = moe_alloc(sizeof(float) * (size_t)(sr * scn * lead) + 4);
    if (!buf || !s) { moe_free(buf); moe_free(s); return moe_fail(MOE_ENOMEM, "%s: out of memory for \"%s\"", path, t->name); }
    moe_to_f32(sc->dtype, sc->data, s, (size_t)(sr * scn * lead));
    for (int64_t e = 0; e < lead; e++)
        moe_f8b128_pack((const uint8_t *)t->data + (size_t)(e * rows * cols), s + (size_t)(e * sr * scn), rows, cols,
                        buf + (size_t)(e * rows) * rb);
    moe_free(s);
    MOE_TRY(own(w, buf));
    t->dtype = MOE_F8_E4M3_B128;
    t->data = buf;
    t->nbytes = rb * (size_t)(rows * lead);
    return MOE_OK;
}

static moe_status pair_mxfp4(moe_weights *w, const char *path, moe_tensor *t, char **name, const moe_tensor *sc) {
    int nd = t->ndim;
    int ok = nd >= 2 && t->shape[nd - 1] == 16 && sc->ndim == nd - 1 && sc->dtype == MOE_U8;
    for (int d = 0; ok && d < nd - 1; d++) ok = sc->shape[d] == t->shape[d];
    if (!ok)
        return moe_fail(MOE_EINPUT, "%s: MXFP4 blocks \"%s\" must be U8 [.., 16] with U8 scales \"%s\" of its other dimensions",
                        path, t->name, sc->name);
    int64_t n = moe_tensor_numel(sc);
    uint8_t *buf = moe_alloc((size_t)n * 17 + 1);
    if (!buf) return moe_fail(MOE_ENOMEM, "%s: out of memory for \"%s\"", path, t->name);
    moe_mxfp4_pack_split(t->data, sc->data, n, buf);
    MOE_TRY(own(w, buf));
    size_t len = strlen(*name) - strlen("_blocks");
    char *base = malloc(len + 1);
    if (!base) return moe_fail(MOE_ENOMEM, "out of memory");
    memcpy(base, *name, len);
    base[len] = 0;
    free(*name);
    *name = base;
    t->name = base;
    t->ndim = nd - 1;
    t->shape[nd - 2] *= 32;
    t->dtype = MOE_MXFP4;
    t->data = buf;
    t->nbytes = (size_t)n * 17;
    return MOE_OK;
}

static moe_status pair_tensors(moe_weights *w) {
    int total = 0;
    for (int i = 0; i < w->n_files; i++) total += w->files[i]->n;
    moe_strmap map;
    tref *refs = malloc(sizeof *refs * ((size_t)total + 1));
    unsigned char **dead = calloc((size_t)w->n_files + 1, sizeof *dead);
    if (!refs || !dead || moe_strmap_init(&map, (size_t)total)) {
        free(refs); free(dead);
        return moe_fail(MOE_ENOMEM, "out of memory");
    }
    moe_status st = MOE_OK;
    int k = 0, any = 0;
    for (int i = 0; i < w->n_files && st == MOE_OK; i++) {
        if (!(dead[i] = calloc((size_t)w->files[i]->n + 1, 1))) st = moe_fail(MOE_ENOMEM, "out of memory");
        for (int j = 0; j < w->files[i]->n && st == MOE_OK; j++, k++) {
            refs[k] = (tref){i, j};
            if (moe_strmap_put(&map, w->files[i]->names[j], strlen(w->files[i]->names[j]), k) < 0) st = moe_fail(MOE_ENOMEM, "out of memory");
        }
    }
    for (int i = 0; i < w->n_files && st == MOE_OK; i++) {
        moe_st_file *f = w->files[i];
        for (int j = 0; j < f->n && st == MOE_OK; j++) {
            moe_tensor *t = &f->tensors[j];
            char partner[300];
            int fp8 = t->dtype == MOE_F8_E4M3 && ends_with(t->name, ".weight");
            int mx = t->dtype == MOE_U8 && ends_with(t->name, "_blocks");
            if (!fp8 && !mx) continue;
            if (fp8) snprintf(partner, sizeof partner, "%s_scale_inv", t->name);
            else snprintf(partner, sizeof partner, "%.*s_scales", (int)(strlen(t->name) - strlen("_blocks")), t->name);
            int p = moe_strmap_gets(&map, partner);
            if (p < 0) continue;   /* a lone F8/U8 tensor: moe_weights_get says what is wrong if it is needed */
            moe_st_file *pf = w->files[refs[p].file];
            const moe_tensor *sc = &pf->tensors[refs[p].idx];
            st = fp8 ? pair_fp8(w, f->path, t, sc) : pair_mxfp4(w, f->path, t, &f->names[j], sc);
            dead[refs[p].file][refs[p].idx] = 1;
            any = 1;
        }
    }
    /* drop the partners (their names were keys of the map: free it first) */
    moe_strmap_free(&map);
    for (int i = 0; i < w->n_files && any; i++) {
        moe_st_file *f = w->files[i];
        int out = 0;
        for (int j = 0; j < f->n; j++) {
            if (dead[i] && dead[i][j]) { free(f->names[j]); continue; }
            f->tensors[out] = f->tensors[j];
            f->names[out] = f->names[j];
            f->tensors[out].name = f->names[out];
            out++;
        }
        f->n = out;
    }
    for (int i = 0; i < w->n_files; i++) free(dead[i]);
    free(dead);
    free(refs);
    return st;
}

/* Was name the partner of a pair (now part of another tensor)? For the index check. */
static int paired_away(const moe_weights *w, const char *name) {
    char base[300];
    const char *suf[] = {"_scale_inv", "_scales", "_blocks"};
    for (int i = 0; i < 3; i++) {
        if (!ends_with(name, suf[i]) || strlen(name) >= sizeof base) continue;
        snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(suf[i])), name);
        int k = moe_strmap_gets(&w->map, base);
        if (k >= 0 && w->list[k]->dtype == (i == 0 ? MOE_F8_E4M3_B128 : MOE_MXFP4)) return 1;
    }
    return 0;
}

moe_status moe_weights_open(const char *dir, moe_weights **out) { return moe_weights_open_ex(dir, 0, out); }

moe_status moe_weights_open_ex(const char *dir, int in_memory, moe_weights **out) {
    *out = NULL;
    struct stat st;
    if (stat(dir, &st) != 0) return moe_fail(MOE_EINPUT, "%s: no such model folder", dir);
    if (!S_ISDIR(st.st_mode)) return moe_fail(MOE_EINPUT, "%s: not a folder", dir);
    moe_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = moe_strdup(dir))) { free(w); return moe_fail(MOE_ENOMEM, "out of memory"); }
    w->in_memory = in_memory;
    w->format = "safetensors";
    char *single = join(dir, "model.safetensors"), *index = join(dir, "model.safetensors.index.json");
    cJSON *root = NULL;
    moe_status s;
    if (!single || !index) s = moe_fail(MOE_ENOMEM, "out of memory");
    else if (file_exists(single)) { s = add_file(w, "model.safetensors"); w->source = single; single = NULL; }
    else if (file_exists(index)) { s = open_index(w, index, &root); w->source = index; index = NULL; }
    else s = moe_fail(MOE_EINPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    if (s == MOE_OK) s = pair_tensors(w);
    if (s == MOE_OK) s = build_table(w);
    if (s == MOE_OK && root) { /* every indexed name must be in the shard the index names */
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
        for (const cJSON *e = map->child; e && s == MOE_OK; e = e->next) {
            if (paired_away(w, e->string)) continue;
            int k = moe_strmap_gets(&w->map, e->string);
            const char *fp = k >= 0 ? strrchr(w->files[w->file_of[k]]->path, '/') + 1 : NULL;
            if (k < 0 || strcmp(fp, e->valuestring) != 0)
                s = moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\" is not in %s as the index says", w->source, e->string,
                             e->valuestring);
        }
    }
    free(single);
    free(index);
    cJSON_Delete(root);
    if (s != MOE_OK) { moe_weights_close(w); return s; }
    *out = w;
    return MOE_OK;
}

moe_status moe_weights_from_file(const char *path, moe_st_file *f, const char *format, moe_weights **out) {
    *out = NULL;
    moe_weights *w = calloc(1, sizeof *w);
    moe_st_file **files = malloc(sizeof *files);
    if (!w || !files || !(w->dir = moe_strdup(path)) || !(w->source = moe_strdup(path))) {
        if (w) { free(w->dir); free(w->source); }
        free(w); free(files); moe_st_close(f);
        return moe_fail(MOE_ENOMEM, "out of memory");
    }
    files[0] = f;
    w->files = files;
    w->n_files = 1;
    w->format = format;
    moe_status st = build_table(w);
    if (st != MOE_OK) { moe_weights_close(w); return st; }
    *out = w;
    return MOE_OK;
}

void moe_weights_close(moe_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_files; i++) moe_st_close(w->files[i]);
    for (int i = 0; i < w->n_owned; i++) moe_free(w->owned[i]);
    free(w->owned);
    free(w->files);
    free(w->list);
    free(w->file_of);
    free(w->used);
    moe_strmap_free(&w->map);
    free(w->source);
    free(w->dir);
    free(w);
}

int moe_weights_has(const moe_weights *w, const char *name) { return moe_strmap_gets(&w->map, name) >= 0; }

void *moe_weights_writable(const moe_weights *w, const moe_tensor *t) {
    for (int i = 0; i < w->n_owned; i++)
        if (w->owned[i] == t->data) return w->owned[i];
    return NULL;
}

const char *moe_weights_file_of(const moe_weights *w, const char *name) {
    int k = moe_strmap_gets(&w->map, name);
    return k >= 0 ? w->files[w->file_of[k]]->path : w->dir;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++) {
        if (shape[i] < 0) n += (size_t)snprintf(buf + n, cap - n, "%s*", i ? ", " : "");
        else n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

moe_status moe_weights_get(moe_weights *w, const char *name, int ndim, const int64_t *shape, moe_tensor *out) {
    int k = moe_strmap_gets(&w->map, name);
    if (k < 0) {
        char blocks[300];
        snprintf(blocks, sizeof blocks, "%s_blocks", name);
        if (moe_strmap_gets(&w->map, blocks) >= 0)
            return moe_fail(MOE_EINPUT, "%s: missing tensor \"%s\": \"%s\" is there but not its \"%s_scales\"", w->source, name, blocks, name);
        return moe_fail(MOE_EINPUT, "%s: missing tensor \"%s\"", w->source, name);
    }
    moe_tensor *t = w->list[k];
    const char *path = w->files[w->file_of[k]]->path;
    if (!moe_dtype_is_matrix(t->dtype)) {
        char names[256];
        moe_dtype_matrix_names(names, sizeof names);
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has dtype %s; supported: %s%s", path, name,
                        moe_dtype_name(t->dtype), names,
                        t->dtype == MOE_F8_E4M3 ? " (and F8_E4M3 with a weight_scale_inv of 128 x 128 tiles beside it)"
                        : t->dtype == MOE_U8 ? " (and MXFP4 as a pair of U8 tensors NAME_blocks and NAME_scales)" : "");
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok) {
        char got[128], want[128];
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        fmt_shape(want, sizeof want, ndim, shape);
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has shape %s, expected %s", path, name, got, want);
    }
    size_t esz = moe_dtype_is_quant(t->dtype) ? 1 : moe_dtype_size(t->dtype); /* block kernels load unaligned */
    if ((uintptr_t)t->data % esz != 0) { /* a hostile or odd header length: copy to aligned memory once */
        void *copy = moe_alloc(t->nbytes);
        void **no = realloc(w->owned, sizeof *no * (size_t)(w->n_owned + 1));
        if (!copy || !no) { moe_free(copy); if (no) w->owned = no; return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
        w->owned = no;
        memcpy(copy, t->data, t->nbytes);
        w->owned[w->n_owned++] = copy;
        t->data = copy;
    }
    w->used[k] = 1;
    *out = *t;
    return MOE_OK;
}

moe_status moe_weights_get_f32(moe_weights *w, const char *name, int ndim, const int64_t *shape, float **out) {
    moe_tensor t;
    *out = NULL;
    MOE_TRY(moe_weights_get(w, name, ndim, shape, &t));
    size_t n = (size_t)moe_tensor_numel(&t);
    int64_t cols = t.ndim > 0 ? t.shape[t.ndim - 1] : 1;
    float *buf = moe_alloc((n ? n : 1) * sizeof(float));
    if (!buf) return moe_fail(MOE_ENOMEM, "%s: out of memory", name);
    if (cols > 0 && moe_rows_to_f32(t.dtype, t.data, (int64_t)n / cols, cols, buf) != 0) {
        moe_free(buf);
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" (%s) cannot be converted to f32", moe_weights_file_of(w, name),
                        name, moe_dtype_name(t.dtype));
    }
    *out = buf;
    return MOE_OK;
}

int moe_weights_unused(const moe_weights *w, const char **first) {
    int n = 0;
    *first = NULL;
    for (int i = 0; i < w->n; i++)
        if (!w->used[i]) { if (!n) *first = w->list[i]->name; n++; }
    return n;
}

size_t moe_weights_prefault(const moe_weights *w) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), total = 0;
    volatile unsigned char sink = 0;
    for (int i = 0; i < w->n_files; i++) {
        const moe_st_file *f = w->files[i];
        if (!f->map) continue;
        madvise(f->map, f->size, MADV_WILLNEED);
        const unsigned char *p = f->map;
        for (size_t off = 0; off < f->size; off += page) sink ^= p[off];
        total += f->size;
    }
    (void)sink;
    return total;
}
