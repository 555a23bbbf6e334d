/* checkpoint.c - writing and reading training checkpoints (see checkpoint.h). */
#include "train/checkpoint.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/input_file.h"
#include "io/json.h"
#include "io/out_dir.h"
#include "io/st_writer.h"
#include "io/weights.h"
#include "moe/router.h"
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC "MOETRST1"
#define STATE_VERSION 1u

static void path_in(char *buf, size_t cap, const char *dir, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* Whether the layout's own router is the one trained: softmax top-k for qwen3_moe and mixtral,
 * DeepSeek-V3's for dots1. */
static int native_router(const moe_tconfig *c) {
    const moe_router_ops *ops = moe_router_find(c->router);
    return ops && moe_router_native_layout(ops, c->layout);
}

/* Whether config.json needs the moe-specific keys: a router, scaling or shared experts the layout
 * cannot express (see moe_ckpt_config_json). */
static int needs_moe_keys(const moe_tconfig *c) {
    int dots = !strcmp(c->layout, "dots1");
    if (c->n_experts == 0 || c->n_dense_layers >= c->n_layers) return 0;
    return !native_router(c) || (c->routed_scaling != 1.0 && !dots) || (c->n_shared > 0 && !dots);
}

static void add_num(cJSON *o, const char *k, double v) { cJSON_AddNumberToObject(o, k, v); }

/* A number written with a decimal point or exponent: transformers 5's config classes refuse an
 * integer where they declare a float (rms_norm_eps, initializer_range, routed_scaling_factor, ...). */
static void add_float(cJSON *o, const char *k, double v) {
    char b[40];
    if (v == floor(v) && fabs(v) < 1e15) snprintf(b, sizeof b, "%.1f", v);
    else
        for (int prec = 1; prec <= 17; prec++) {   /* the shortest that reads back exactly */
            snprintf(b, sizeof b - 2, "%.*g", prec, v);
            if (strtod(b, NULL) == v) break;
        }
    if (!strpbrk(b, ".eE")) strcat(b, ".0");
    cJSON_AddRawToObject(o, k, b);
}

cJSON *moe_ckpt_config_json(const moe_tconfig *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int mix = !strcmp(c->layout, "mixtral"), dots = !strcmp(c->layout, "dots1"), llama = !strcmp(c->layout, "llama");
    const char *arch = mix ? "MixtralForCausalLM" : dots ? "Dots1ForCausalLM" : llama ? "LlamaForCausalLM"
                                                                                    : "Qwen3MoeForCausalLM";
    /* A model the layout cannot express (moe-specific keys below) gets a model_type and an
     * architecture nobody else knows, "moe_<layout>" and "Moe<class>": transformers and other
     * loaders would otherwise read it as the plain layout, with its own router and without the shared
     * experts, and compute another function without a word. moe reads the family after "moe_". */
    int moe_only = needs_moe_keys(c);
    char archbuf[64], typebuf[48];
    snprintf(archbuf, sizeof archbuf, "%s%s", moe_only ? "Moe" : "", arch);
    snprintf(typebuf, sizeof typebuf, "%s%s", moe_only ? "moe_" : "", c->layout);
    cJSON *archs = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(archs, cJSON_CreateString(archbuf));
    cJSON_AddStringToObject(o, "model_type", typebuf);
    add_num(o, "vocab_size", c->vocab);
    add_num(o, "hidden_size", c->d_model);
    add_num(o, "num_hidden_layers", c->n_layers);
    add_num(o, "num_attention_heads", c->n_heads);
    add_num(o, "num_key_value_heads", c->n_kv_heads);
    add_num(o, "head_dim", c->head_dim);
    add_num(o, "max_position_embeddings", c->seq_len > 4096 ? c->seq_len : 4096);
    add_float(o, "rms_norm_eps", c->rms_eps);
    add_float(o, "rope_theta", c->rope_theta);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", 0);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    add_float(o, "initializer_range", c->init_std);
    int E = c->n_experts > 0 ? c->n_experts : 1;
    if (llama) {
        add_num(o, "intermediate_size", c->d_ff);
        cJSON_AddBoolToObject(o, "attention_bias", 0);
        cJSON_AddBoolToObject(o, "mlp_bias", 0);
        return o;
    }
    if (mix) {
        add_num(o, "intermediate_size", c->d_expert);
        add_num(o, "num_local_experts", E);
        add_num(o, "num_experts_per_tok", c->top_k);
        cJSON_AddNullToObject(o, "sliding_window");
        add_float(o, "router_aux_loss_coef", c->balance_loss);
    } else if (dots) {
        add_num(o, "intermediate_size", c->d_ff);
        add_num(o, "moe_intermediate_size", c->d_expert);
        add_num(o, "n_routed_experts", E);
        add_num(o, "n_shared_experts", c->n_shared);
        add_num(o, "num_experts_per_tok", c->top_k);
        add_num(o, "first_k_dense_replace", c->n_dense_layers);
        cJSON_AddBoolToObject(o, "norm_topk_prob", c->norm_topk);
        add_num(o, "n_group", 1);
        add_num(o, "topk_group", 1);
        add_float(o, "routed_scaling_factor", c->routed_scaling);
        cJSON_AddBoolToObject(o, "attention_bias", 0);
        cJSON_AddNullToObject(o, "sliding_window");
        add_num(o, "max_window_layers", c->n_layers);
    } else {
        add_num(o, "intermediate_size", c->d_ff);
        add_num(o, "moe_intermediate_size", c->d_expert);
        add_num(o, "num_experts", E);
        add_num(o, "num_experts_per_tok", c->n_experts > 0 ? c->top_k : 1);
        cJSON_AddBoolToObject(o, "norm_topk_prob", c->norm_topk);
        add_num(o, "decoder_sparse_step", 1);
        cJSON *only = cJSON_AddArrayToObject(o, "mlp_only_layers");
        for (int l = 0; l < c->n_layers; l++)
            if (!moe_tconfig_is_moe_layer(c, l)) cJSON_AddItemToArray(only, cJSON_CreateNumber(l));
        cJSON_AddBoolToObject(o, "attention_bias", 0);
        cJSON_AddBoolToObject(o, "use_sliding_window", 0);
        add_float(o, "router_aux_loss_coef", c->balance_loss);
    }
    /* what transformers cannot express: a moe-specific router, shared experts beside qwen3_moe/mixtral */
    if (moe_only) {
        if (!native_router(c) || (c->routed_scaling != 1.0 && !dots)) {
            cJSON_AddStringToObject(o, "moe_router", c->router);
            cJSON *rp = cJSON_AddObjectToObject(o, "moe_router_params");
            add_num(rp, "capacity_factor", c->capacity_factor);
            add_num(rp, "top_p", c->top_p);
            add_num(rp, "slots", c->slots);
            add_num(rp, "rank", c->aoe_rank);
            add_num(rp, "seed", (double)(c->seed & ((1ULL << 53) - 1)));
            add_num(rp, "routed_scaling", c->routed_scaling);
        }
        if (c->n_shared > 0 && !dots) add_num(o, "moe_shared_expert_intermediate_size", c->n_shared * c->d_expert);
    }
    return o;
}

static moe_status put_json(moe_outdir *od, const char *name, const cJSON *o) {
    char *s = cJSON_Print(o);
    if (!s) return moe_fail(MOE_ENOMEM, "out of memory");
    size_t len = strlen(s);
    s[len] = '\n';   /* cJSON_Print's terminator becomes the final newline; len + 1 bytes to write */
    moe_status st = moe_outdir_put(od, name, s, len + 1);
    free(s);
    return st;
}

/* tokenizer.json for byte-level models: every byte is one token whose id is the byte, written the
 * way GPT-2's byte-level BPE writes bytes (each byte as one printable character) with no merges, so
 * that `moe run`, `moe tokenize` and Hugging Face tokenizers encode and decode text with it. */
static cJSON *byte_tokenizer_json(void) {
    int cp[256], n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        cp[b] = printable ? b : 256 + n++;
    }
    cJSON *o = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    if (!o || !vocab) { cJSON_Delete(o); cJSON_Delete(vocab); return NULL; }
    for (int b = 0; b < 256; b++) {
        char k[4];
        if (cp[b] < 0x80) { k[0] = (char)cp[b]; k[1] = 0; }
        else { k[0] = (char)(0xc0 | (cp[b] >> 6)); k[1] = (char)(0x80 | (cp[b] & 0x3f)); k[2] = 0; }
        cJSON_AddNumberToObject(vocab, k, b);
    }
    cJSON_AddStringToObject(o, "version", "1.0");
    cJSON_AddNullToObject(o, "truncation");
    cJSON_AddNullToObject(o, "padding");
    cJSON_AddArrayToObject(o, "added_tokens");
    cJSON_AddNullToObject(o, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(o, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "trim_offsets", 0);
    cJSON_AddBoolToObject(pre, "use_regex", 0);
    cJSON_AddNullToObject(o, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(o, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 0);
    cJSON_AddBoolToObject(dec, "trim_offsets", 0);
    cJSON_AddBoolToObject(dec, "use_regex", 0);
    cJSON *model = cJSON_AddObjectToObject(o, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddArrayToObject(model, "merges");
    return o;
}

typedef struct order_item {
    int64_t key;
    int index;          /* parameter index */
} order_item;

typedef struct write_order {
    const moe_tparams *p;
    order_item *at;     /* file position -> parameter */
} write_order;

static moe_status tensor_data(void *user, int i, const void **out) {
    const write_order *w = user;
    *out = w->p->val + w->p->t[w->at[i].index].offset;
    return MOE_OK;
}

static int by_key(const void *a, const void *b) {
    int64_t ka = ((const order_item *)a)->key, kb = ((const order_item *)b)->key;
    return ka < kb ? -1 : ka > kb;
}

/* Training keeps each projection of all experts together (its kernels want them stacked); the file
 * puts each expert's gate, up and down back to back instead, where the first expert tensor of the
 * layer stood, so that the on-disk expert store reads one expert with one read. */
static void expert_contiguous_order(write_order *w) {
    const moe_tparams *p = w->p;
    int first_layer = -1, first_index = 0;
    for (int i = 0; i < p->n; i++) {
        int l, e, n = 0;
        char proj[16];
        w->at[i] = (order_item){(int64_t)i << 24, i};
        if (sscanf(p->t[i].name, "model.layers.%d.%*[a-z_].experts.%d.%15[a-z]_proj.weight%n", &l, &e, proj, &n) == 3 &&
            n > 0 && p->t[i].name[n] == 0) {
            if (l != first_layer) { first_layer = l; first_index = i; }
            int k = !strcmp(proj, "gate") ? 0 : !strcmp(proj, "up") ? 1 : 2;
            w->at[i].key = ((int64_t)first_index << 24) + 1 + (int64_t)e * 3 + k;
        }
    }
    qsort(w->at, (size_t)p->n, sizeof *w->at, by_key);
}

moe_status moe_ckpt_write_model(const moe_tparams *p, moe_outdir *od) {
    char path[1024];
    const char *dir = od->write;
    cJSON *cfg = moe_ckpt_config_json(&p->cfg);
    if (!cfg) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_status st = put_json(od, "config.json", cfg);
    cJSON_Delete(cfg);
    if (st) return st;
    if (p->cfg.tokenizer[0]) {
        /* the tokenizer the data was encoded with, and its tokenizer_config.json when one lies beside it */
        char src[1024], dirbuf[600];
        struct stat sb;
        snprintf(dirbuf, sizeof dirbuf, "%s", p->cfg.tokenizer);
        if (stat(dirbuf, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            path_in(src, sizeof src, dirbuf, "tokenizer.json");
        } else {
            snprintf(src, sizeof src, "%s", dirbuf);
            char *slash = strrchr(dirbuf, '/');
            if (slash) *slash = 0; else snprintf(dirbuf, sizeof dirbuf, ".");
        }
        MOE_TRY(moe_outdir_copy(od, "tokenizer.json", src));
        path_in(src, sizeof src, dirbuf, "tokenizer_config.json");
        if (access(src, F_OK) == 0) MOE_TRY(moe_outdir_copy(od, "tokenizer_config.json", src));
    } else if (p->cfg.vocab == 256) {
        cJSON *tk = byte_tokenizer_json();
        if (!tk) return moe_fail(MOE_ENOMEM, "out of memory");
        st = put_json(od, "tokenizer.json", tk);
        cJSON_Delete(tk);
        if (st) return st;
        /* names the tokenizer class for transformers' AutoTokenizer; no BOS or EOS token */
        cJSON *tc = cJSON_CreateObject();
        if (!tc) return moe_fail(MOE_ENOMEM, "out of memory");
        cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
        cJSON_AddBoolToObject(tc, "clean_up_tokenization_spaces", 0);
        cJSON_AddNullToObject(tc, "bos_token");
        cJSON_AddNullToObject(tc, "eos_token");
        st = put_json(od, "tokenizer_config.json", tc);
        cJSON_Delete(tc);
        if (st) return st;
    }
    moe_st_entry *t = calloc((size_t)p->n, sizeof *t);
    write_order w = {p, calloc((size_t)p->n, sizeof(order_item))};
    if (!t || !w.at) {
        free(t); free(w.at);
        return moe_fail(MOE_ENOMEM, "out of memory");
    }
    expert_contiguous_order(&w);
    for (int j = 0; j < p->n; j++) {
        const moe_tparam *q = &p->t[w.at[j].index];
        t[j].name = q->name;
        t[j].dtype = "F32";
        t[j].ndim = q->ndim;
        t[j].shape[0] = q->shape[0];
        t[j].shape[1] = q->shape[1];
        t[j].nbytes = (uint64_t)q->numel * 4;
    }
    static const char *const mk[] = {"format"}, *const mv[] = {"pt"};
    path_in(path, sizeof path, dir, "model.safetensors");
    st = moe_st_write(path, t, p->n, mk, mv, 1, tensor_data, &w);
    free(t);
    free(w.at);
    return st;
}

moe_status moe_ckpt_save_model(const moe_tparams *p, const char *dir) {
    moe_outdir od;
    MOE_TRY(moe_outdir_open(&od, "checkpoint folder", dir));
    moe_status st = moe_outdir_begin(&od);
    if (!st) st = moe_ckpt_write_model(p, &od);
    if (!st) st = moe_outdir_commit(&od);
    moe_outdir_close(&od);
    return st;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

typedef struct state_header {
    char magic[8];
    uint32_t version, n_tensors;
    int64_t step;
    uint64_t data_rng, model_rng, total, checksum;
} state_header;

static uint64_t state_checksum(const moe_tparams *p, const state_header *h) {
    uint64_t c = 0xcbf29ce484222325ULL;
    c = fnv1a(c, &h->step, sizeof h->step);
    c = fnv1a(c, &h->data_rng, sizeof h->data_rng);
    c = fnv1a(c, &h->model_rng, sizeof h->model_rng);
    c = fnv1a(c, p->val, p->total * 4);
    c = fnv1a(c, p->m, p->total * 4);
    return fnv1a(c, p->v, p->total * 4);
}

moe_status moe_ckpt_write_state(const moe_tparams *p, const moe_train_state *s, moe_outdir *od) {
    char path[1024];
    const char *dir = od->write;
    cJSON *tc = moe_tconfig_to_json(&p->cfg);
    if (!tc) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_status st = put_json(od, "train.json", tc);
    cJSON_Delete(tc);
    if (st) return st;
    state_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, STATE_MAGIC, 8);
    h.version = STATE_VERSION;
    h.n_tensors = (uint32_t)p->n;
    h.step = s->step;
    h.data_rng = s->data_rng;
    h.model_rng = s->model_rng;
    h.total = p->total;
    h.checksum = state_checksum(p, &h);
    path_in(path, sizeof path, dir, "train_state.bin");
    moe_atomic_file af;
    MOE_TRY(moe_atomic_open(&af, path));
    fwrite(&h, sizeof h, 1, af.f);
    fwrite(p->val, 4, p->total, af.f);
    fwrite(p->m, 4, p->total, af.f);
    fwrite(p->v, 4, p->total, af.f);
    return moe_atomic_commit(&af);
}

moe_status moe_ckpt_read_train_config(const char *dir, moe_tconfig *c) {
    char path[1024];
    path_in(path, sizeof path, dir, "train.json");
    return moe_tconfig_load_file(c, path);
}

/* Values and moments must be finite (and second moments not negative): a state holding NaN would
 * otherwise surface steps later as a "diverged" loss blamed on the learning rate. */
static moe_status check_finite(const moe_tparams *p, const char *path) {
    for (int i = 0; i < p->n; i++) {
        const moe_tparam *t = &p->t[i];
        for (size_t k = 0; k < t->numel; k++) {
            size_t j = t->offset + k;
            const char *what = !isfinite(p->val[j]) ? "value" : !isfinite(p->m[j]) ? "first moment"
                               : !isfinite(p->v[j]) || p->v[j] < 0 ? "second moment" : NULL;
            if (what)
                return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" element %zu: the %s is %g (not a usable training state)",
                                path, t->name, k, what, what[0] == 'v' ? p->val[j] : what[0] == 'f' ? p->m[j] : p->v[j]);
        }
    }
    return MOE_OK;
}

moe_status moe_ckpt_load_state(moe_tparams *p, moe_train_state *s, const char *dir) {
    char path[1024];
    path_in(path, sizeof path, dir, "train_state.bin");
    FILE *f;
    MOE_TRY(moe_input_fopen(path, &f));
    state_header h;
    moe_status st = MOE_OK;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, STATE_MAGIC, 8) != 0) {
        st = moe_fail(MOE_EINPUT, "%s: not a moe training state file", path);
    } else if (h.version != STATE_VERSION) {
        st = moe_fail(MOE_EINPUT, "%s: version %u is not supported (expected %u)", path, h.version, STATE_VERSION);
    } else if (h.step < 1 || h.step > INT32_MAX) {
        /* a checkpoint is saved after step 1 at the earliest, and --steps is an int: anything else is a
         * crafted or corrupt file (and a step near INT64_MIN would overflow the loop's arithmetic) */
        st = moe_fail(MOE_EINPUT, "%s: step counter %lld is out of range (1 to %d); the file is corrupt", path,
                      (long long)h.step, INT32_MAX);
    } else if (h.total != p->total || h.n_tensors != (uint32_t)p->n) {
        st = moe_fail(MOE_EINPUT, "%s: holds %llu values in %u tensors but the configured model has %zu in %d", path,
                      (unsigned long long)h.total, h.n_tensors, p->total, p->n);
    } else if (fread(p->val, 4, p->total, f) != p->total || fread(p->m, 4, p->total, f) != p->total ||
               fread(p->v, 4, p->total, f) != p->total || fgetc(f) != EOF) {
        st = moe_fail(MOE_EINPUT, "%s: truncated or too long", path);
    } else if (state_checksum(p, &h) != h.checksum) {
        st = moe_fail(MOE_EINPUT, "%s: checksum mismatch (the file is corrupt)", path);
    } else if ((st = check_finite(p, path)) != MOE_OK) {
    } else {
        s->step = h.step;
        s->data_rng = h.data_rng;
        s->model_rng = h.model_rng;
    }
    fclose(f);
    return st;
}

moe_status moe_ckpt_load_weights(moe_tparams *p, const char *dir) {
    moe_weights *w;
    MOE_TRY(moe_weights_open(dir, &w));
    moe_status st = MOE_OK;
    for (int i = 0; i < p->n && !st; i++) {
        const moe_tparam *t = &p->t[i];
        if (!t->trainable && !moe_weights_has(w, t->name)) continue;   /* buffers start at zero */
        float *v;
        st = moe_weights_get_f32(w, t->name, t->ndim, t->shape, &v);
        if (st) break;
        for (size_t k = 0; k < t->numel && !st; k++)
            if (!isfinite(v[k]))
                st = moe_fail(MOE_EINPUT, "%s: tensor \"%s\" element %zu is %g; training needs finite starting weights",
                              dir, t->name, k, v[k]);
        memcpy(p->val + t->offset, v, t->numel * 4);
        moe_free(v);
    }
    if (!st) {
        const char *first;
        int unused = moe_weights_unused(w, &first);
        if (unused)
            st = moe_fail(MOE_EINPUT, "%s: %d tensors do not belong to the configured model, e.g. \"%s\"", dir, unused, first);
    }
    moe_weights_close(w);
    return st;
}
