/* tconfig.c - defaults, presets, the field table, JSON in and out, validation (see tconfig.h). */
#include "train/tconfig.h"
#include "core/error.h"
#include "io/json.h"
#include "moe/router.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(name, type, field, lo, hi, help) {name, type, offsetof(moe_tconfig, field), lo, hi, help}
const moe_tfield moe_tconfig_fields[] = {
    F("vocab", 'i', vocab, 2, 1 << 20, "vocabulary size (256: bytes)"),
    F("d-model", 'i', d_model, 4, 16384, "hidden size"),
    F("layers", 'i', n_layers, 1, 256, "transformer layers"),
    F("heads", 'i', n_heads, 1, 256, "attention heads"),
    F("kv-heads", 'i', n_kv_heads, 0, 256, "key/value heads (0: same as heads)"),
    F("head-dim", 'i', head_dim, 0, 1024, "width of a head (0: d-model / heads)"),
    F("seq-len", 'i', seq_len, 2, 65536, "tokens per training sequence"),
    F("d-ff", 'i', d_ff, 1, 1 << 20, "width of dense FFN layers"),
    F("dense-layers", 'i', n_dense_layers, 0, 256, "the first N layers are dense"),
    F("experts", 'i', n_experts, 0, 4096, "routed experts per MoE layer (0: a dense model)"),
    F("top-k", 'i', top_k, 1, 4096, "experts per token"),
    F("d-expert", 'i', d_expert, 1, 1 << 20, "width of each routed expert"),
    F("shared", 'i', n_shared, 0, 64, "shared (always-on) experts of width d-expert"),
    F("qk-norm", 'i', qk_norm, 0, 1, "RMSNorm on each head of q and k (1) or not (0)"),
    F("rope-theta", 'd', rope_theta, 1, 1e9, "RoPE base"),
    F("rms-eps", 'd', rms_eps, 1e-12, 0.1, "RMSNorm epsilon"),
    F("init-std", 'd', init_std, 1e-6, 1, "standard deviation of the initial weights"),
    F("router", 's', router, 0, 0, "router (see docs/ROUTERS.md)"),
    F("norm-topk", 'i', norm_topk, 0, 1, "renormalise the chosen experts' weights to sum to 1"),
    F("capacity-factor", 'd', capacity_factor, 0, 64, "switch / expert_choice capacity factor"),
    F("top-p", 'd', top_p, 0, 1, "top_p router: cumulative probability"),
    F("routed-scaling", 'd', routed_scaling, 0, 1000, "multiply routed weights (DeepSeek)"),
    F("bias-rate", 'd', bias_rate, 0, 1, "deepseek_v3: update rate of the balancing bias"),
    F("slots", 'i', slots, 0, 1024, "soft router: slots per expert"),
    F("aoe-rank", 'i', aoe_rank, 0, 1 << 16, "aoe router: rank of the factor experts rank themselves by"),
    F("balance-loss", 'd', balance_loss, 0, 100, "Switch load-balancing loss coefficient"),
    F("z-loss", 'd', z_loss, 0, 100, "router z-loss coefficient"),
    F("seq-balance-loss", 'd', seq_balance_loss, 0, 100, "DeepSeek sequence-wise balance loss coefficient"),
    F("layout", 's', layout, 0, 0, "checkpoint layout: auto, qwen3_moe, mixtral, dots1, llama (dense)"),
    F("tokenizer", 'p', tokenizer, 0, 0, "tokenizer.json (or its folder) to encode the data with; default: bytes"),
    F("batch", 'i', batch, 1, 1 << 16, "sequences per step"),
    F("steps", 'i', steps, 1, 1 << 30, "optimizer steps"),
    F("warmup", 'i', warmup, 0, 1 << 30, "linear warmup steps"),
    F("eval-every", 'i', eval_every, 0, 1 << 30, "evaluate on the held-out split every N steps (0: only at the end)"),
    F("eval-batches", 'i', eval_batches, 1, 1 << 20, "batches per evaluation"),
    F("save-every", 'i', save_every, 0, 1 << 30, "write a checkpoint every N steps (0: only at the end)"),
    F("lr", 'd', lr, 0, 10, "peak learning rate"),
    F("min-lr", 'd', min_lr, 0, 10, "learning rate at the end of the cosine decay"),
    F("weight-decay", 'd', weight_decay, 0, 10, "AdamW decoupled weight decay (matrices only)"),
    F("beta1", 'd', beta1, 0, 0.999999, "AdamW beta1"),
    F("beta2", 'd', beta2, 0, 0.999999999, "AdamW beta2"),
    F("adam-eps", 'd', adam_eps, 1e-30, 1, "AdamW epsilon"),
    F("grad-clip", 'd', grad_clip, 0, 1e9, "clip the global gradient norm (0: off)"),
    F("val-fraction", 'd', val_fraction, 0.001, 0.9, "the last fraction of the data held out for evaluation"),
    F("seed", 'l', seed, 0, 9.2e18, "random seed (weights, batches, stochastic routers)"),
};
#undef F
const int moe_tconfig_n_fields = (int)(sizeof moe_tconfig_fields / sizeof *moe_tconfig_fields);

void moe_tconfig_defaults(moe_tconfig *c) {
    memset(c, 0, sizeof *c);
    c->vocab = 256;
    c->d_model = 128; c->n_layers = 4; c->n_heads = 4; c->seq_len = 128;
    c->d_ff = 512; c->n_experts = 8; c->top_k = 2; c->d_expert = 128; c->qk_norm = 1;
    c->rope_theta = 10000; c->rms_eps = 1e-6; c->init_std = 0.02;
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->norm_topk = 1;
    c->routed_scaling = 1.0; c->bias_rate = 1e-3;
    c->balance_loss = 0.01; c->z_loss = 0.001;
    snprintf(c->layout, sizeof c->layout, "auto");
    c->batch = 16; c->steps = 1000; c->warmup = 50; c->eval_every = 100; c->eval_batches = 8;
    c->lr = 2e-3; c->min_lr = 2e-4; c->weight_decay = 0.1; c->beta1 = 0.9; c->beta2 = 0.95; c->adam_eps = 1e-8;
    c->grad_clip = 1.0; c->val_fraction = 0.1; c->seed = 1337;
}

moe_status moe_tconfig_preset(moe_tconfig *c, const char *name) {
    if (!strcmp(name, "tiny")) {
        c->d_model = 128; c->n_layers = 4; c->n_heads = 4; c->n_kv_heads = 0; c->seq_len = 128;
        c->d_ff = 512; c->n_experts = 8; c->top_k = 2; c->d_expert = 128; c->batch = 16;
    } else if (!strcmp(name, "small")) {
        c->d_model = 256; c->n_layers = 6; c->n_heads = 8; c->n_kv_heads = 4; c->seq_len = 256;
        c->d_ff = 1024; c->n_experts = 16; c->top_k = 2; c->d_expert = 256; c->batch = 16;
        c->lr = 1e-3; c->min_lr = 1e-4;
    } else {
        return moe_fail(MOE_EUSAGE, "unknown preset \"%.40s\" (tiny, small)", name);
    }
    return MOE_OK;
}

static const moe_tfield *find_field(const char *name) {
    for (int i = 0; i < moe_tconfig_n_fields; i++) {
        const char *f = moe_tconfig_fields[i].name;
        size_t j = 0;
        for (; f[j] && name[j]; j++)
            if (f[j] != name[j] && !(f[j] == '-' && name[j] == '_')) break;
        if (!f[j] && !name[j]) return &moe_tconfig_fields[i];
    }
    return NULL;
}

/* The shortest decimal that reads back as v (%g's six digits would print beta2's bound 0.999999999 as 1). */
static const char *exact(char *b, size_t n, double v) {
    if (v == floor(v) && fabs(v) < 1e15) { snprintf(b, n, "%.0f", v); return b; }   /* 1000000, not 1e+06 */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(b, n, "%.*g", prec, v);
        if (strtod(b, NULL) == v) break;
    }
    return b;
}

static moe_status set_num(moe_tconfig *c, const moe_tfield *f, double v, const char *where) {
    void *p = (char *)c + f->offset;
    char bv[32], blo[32], bhi[32];
    if (!(v >= f->min && v <= f->max))
        return moe_fail(MOE_EUSAGE, "%s%s = %s is outside [%s, %s]", where, f->name, exact(bv, sizeof bv, v),
                        exact(blo, sizeof blo, f->min), exact(bhi, sizeof bhi, f->max));
    if (f->type != 'd' && v != floor(v)) return moe_fail(MOE_EUSAGE, "%s%s = %g must be an integer", where, f->name, v);
    switch (f->type) {
    case 'i': *(int *)p = (int)v; break;
    case 'l': *(int64_t *)p = (int64_t)v; break;
    case 'd': *(double *)p = v; break;
    }
    return MOE_OK;
}

static moe_status set_str(moe_tconfig *c, const moe_tfield *f, const char *v, const char *where) {
    size_t cap = f->type == 'p' ? sizeof c->tokenizer : 32;
    if (strlen(v) >= cap) return moe_fail(MOE_EUSAGE, "%s%s = \"%.40s...\" is too long", where, f->name, v);
    snprintf((char *)c + f->offset, cap, "%s", v);
    return MOE_OK;
}

moe_status moe_tconfig_set(moe_tconfig *c, const char *name, const char *value) {
    const moe_tfield *f = find_field(name);
    if (!f) return moe_fail(MOE_EUSAGE, "unknown option %s", name);
    if (f->type == 's' || f->type == 'p') return set_str(c, f, value, "--");
    char *end;
    double v = strtod(value, &end);
    if (end == value || *end || !isfinite(v))
        return moe_fail(MOE_EUSAGE, "--%s: \"%.40s\" is not a number", f->name, value);
    return set_num(c, f, v, "--");
}

moe_status moe_tconfig_apply_json(moe_tconfig *c, const char *path, const cJSON *obj) {
    if (!cJSON_IsObject(obj)) return moe_fail(MOE_EINPUT, "%s: the training config must be a JSON object", path);
    char where[600];
    snprintf(where, sizeof where, "%s: ", path);
    for (const cJSON *e = obj->child; e; e = e->next) {
        const moe_tfield *f = find_field(e->string);
        if (!f) return moe_fail(MOE_EINPUT, "%s: unknown key \"%.60s\"", path, e->string);
        if (f->type == 's' || f->type == 'p') {
            if (!cJSON_IsString(e)) return moe_fail(MOE_EINPUT, "%s: key \"%s\" must be a string", path, e->string);
            moe_status st = set_str(c, f, e->valuestring, where);
            if (st) return MOE_EINPUT;
        } else {
            if (!cJSON_IsNumber(e)) return moe_fail(MOE_EINPUT, "%s: key \"%s\" must be a number", path, e->string);
            moe_status st = set_num(c, f, e->valuedouble, where);
            if (st) return MOE_EINPUT;
        }
    }
    return MOE_OK;
}

moe_status moe_tconfig_load_file(moe_tconfig *c, const char *path) {
    cJSON *root;
    MOE_TRY(moe_json_parse_file(path, 1u << 20, &root));
    moe_status st = moe_tconfig_apply_json(c, path, root);
    cJSON_Delete(root);
    return st;
}

cJSON *moe_tconfig_to_json(const moe_tconfig *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    for (int i = 0; i < moe_tconfig_n_fields; i++) {
        const moe_tfield *f = &moe_tconfig_fields[i];
        char key[64];
        snprintf(key, sizeof key, "%s", f->name);
        for (char *p = key; *p; p++) if (*p == '-') *p = '_';
        const void *p = (const char *)c + f->offset;
        cJSON *v = NULL;
        switch (f->type) {
        case 'i': v = cJSON_CreateNumber(*(const int *)p); break;
        case 'l': v = cJSON_CreateNumber((double)*(const int64_t *)p); break;
        case 'd': v = cJSON_CreateNumber(*(const double *)p); break;
        case 's':
        case 'p': v = cJSON_CreateString((const char *)p); break;
        }
        if (!v || !cJSON_AddItemToObject(o, key, v)) { cJSON_Delete(v); cJSON_Delete(o); return NULL; }
    }
    return o;
}

int moe_tconfig_is_moe_layer(const moe_tconfig *c, int layer) {
    return c->n_experts > 0 && layer >= c->n_dense_layers;
}

/* Routers the trainer knows how to train (deepseek_v2 and sparsemixer are inference-only). */
static int trainable_router(const char *name) {
    const moe_router_ops *ops = moe_router_find(name);
    return ops && ops->trainable;
}

/* Comma-separated names of the trainable routers, for messages. */
static const char *trainable_router_names(void) {
    static char buf[512];
    if (buf[0]) return buf;
    const char *all = moe_router_names();
    while (*all) {
        size_t n = strcspn(all, ",");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(n < 63 ? n : 63), all);
        if (trainable_router(name) && strlen(buf) + n + 3 < sizeof buf) {
            if (buf[0]) strcat(buf, ", ");
            strcat(buf, name);
        }
        all += n;
        while (*all == ',' || *all == ' ') all++;
    }
    return buf;
}

moe_status moe_tconfig_finish(moe_tconfig *c) {
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    if (c->head_dim == 0) {
        if (c->d_model % c->n_heads) return moe_fail(MOE_EUSAGE, "d-model %d is not divisible by heads %d", c->d_model, c->n_heads);
        c->head_dim = c->d_model / c->n_heads;
    }
    if (c->head_dim % 2) return moe_fail(MOE_EUSAGE, "head-dim %d must be even (RoPE rotates pairs)", c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return moe_fail(MOE_EUSAGE, "heads %d is not a multiple of kv-heads %d", c->n_heads, c->n_kv_heads);
    if (c->n_dense_layers > c->n_layers)
        return moe_fail(MOE_EUSAGE, "dense-layers %d exceeds layers %d", c->n_dense_layers, c->n_layers);
    if (c->min_lr > c->lr) return moe_fail(MOE_EUSAGE, "min-lr %g exceeds lr %g", c->min_lr, c->lr);
    if (c->n_experts > 0) {
        if (c->top_k > c->n_experts) return moe_fail(MOE_EUSAGE, "top-k %d exceeds experts %d", c->top_k, c->n_experts);
        if (!trainable_router(c->router))
            return moe_fail(MOE_EUSAGE, "router \"%s\" is not a trainable router (%s)", c->router, trainable_router_names());
        const moe_router_ops *ops = moe_router_find(c->router);
        if (ops->expert_gate_factored && c->aoe_rank == 0) c->aoe_rank = c->d_model / 4 > 0 ? c->d_model / 4 : 1;
        if (ops->kind == MOE_ROUTE_SOFT && c->slots == 0) c->slots = 1;
        if (c->capacity_factor == 0) c->capacity_factor = ops->default_capacity > 0 ? ops->default_capacity : 1.0;
        if (c->top_p == 0) c->top_p = 0.5;
    }
    int dense_only = c->n_experts == 0 || c->n_dense_layers == c->n_layers;
    if (!strcmp(c->layout, "auto")) {
        const char *l;
        if (dense_only) l = c->qk_norm ? "qwen3_moe" : "llama";
        else if (moe_router_native_layout(moe_router_find(c->router), "dots1")) l = "dots1";
        else if (!c->qk_norm && c->n_dense_layers == 0 && c->n_shared == 0 && c->norm_topk) l = "mixtral";
        else l = "qwen3_moe";
        snprintf(c->layout, sizeof c->layout, "%s", l);
    }
    if (!strcmp(c->layout, "qwen3_moe") || !strcmp(c->layout, "dots1")) {
        if (!c->qk_norm) {
            int dots = !strcmp(c->layout, "dots1");
            return moe_fail(MOE_EUSAGE, "layout %s has q/k norms: use --qk-norm 1%s", c->layout,
                            dots ? "" : c->norm_topk ? " or --layout mixtral"
                                                     : " (the mixtral layout, without them, always renormalises: --norm-topk 1)");
        }
        if (!strcmp(c->layout, "dots1") && !moe_router_native_layout(moe_router_find(c->router), "dots1"))
            return moe_fail(MOE_EUSAGE, "layout dots1 needs --router deepseek_v3");
    } else if (!strcmp(c->layout, "mixtral")) {
        if (c->qk_norm || c->n_dense_layers || c->n_shared || c->n_experts == 0)
            return moe_fail(MOE_EUSAGE, "layout mixtral has no q/k norms, dense layers or shared experts "
                                        "(use --qk-norm 0 --dense-layers 0 --shared 0, or --layout qwen3_moe)");
        /* Mixtral always renormalises the chosen experts' weights; a checkpoint trained without would
         * be read (by moe and transformers) as a different model */
        if (!c->norm_topk)
            return moe_fail(MOE_EUSAGE, "layout mixtral always renormalises the top-k weights: --norm-topk 0 needs "
                                        "--layout qwen3_moe (with --qk-norm 1)");
    } else if (!strcmp(c->layout, "llama")) {
        if (c->qk_norm || !dense_only)
            return moe_fail(MOE_EUSAGE, "layout llama is for dense models without q/k norms (--experts 0 --qk-norm 0)");
    } else {
        return moe_fail(MOE_EUSAGE, "unknown layout \"%s\" (auto, qwen3_moe, mixtral, dots1, llama)", c->layout);
    }
    return MOE_OK;
}

void moe_tconfig_router_params(const moe_tconfig *c, moe_router_params *p) {
    memset(p, 0, sizeof *p);
    p->n_experts = c->n_experts;
    p->top_k = c->top_k;
    p->d_model = c->d_model;
    p->norm_topk_prob = c->norm_topk;
    p->routed_scaling = c->routed_scaling;
    p->n_group = 1;   /* DeepSeek-V3 with one group: no group limit */
    p->topk_group = 1;
    p->capacity_factor = c->capacity_factor;
    p->top_p = c->top_p;
    p->slots = c->slots;
    p->rank = c->aoe_rank;
    p->seed = (uint64_t)c->seed & ((1ULL << 53) - 1);   /* what config.json can hold exactly */
}

int moe_tconfig_n_logits(const moe_tconfig *c) {
    const moe_router_ops *ops = moe_router_find(c->router);
    if (!ops) return c->n_experts;
    moe_router_params p;
    moe_tconfig_router_params(c, &p);
    return ops->n_logits ? ops->n_logits(&p) : c->n_experts;
}
