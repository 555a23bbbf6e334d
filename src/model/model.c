/* model.c - loading: parse config.json, open the safetensors (or a GGUF file: model/gguf_model.c gives
 * both), bind every tensor the architecture needs with its expected shape, and compute the info
 * counts (parameters, active parameters, bytes read per token). Matrices stay in their file dtype and
 * in the mmap; small vectors become f32. */
#include "model/model.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "io/gguf.h"
#include "model/gguf_model.h"
#include "moe/route_policy.h"
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct binder {
    moe_model *m;
    uint64_t params, bytes_fixed, bytes_experts_per_layer_sum;
} binder;

moe_status moe_model_keep(moe_model *m, void *p) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = realloc(m->owned, sizeof *n * (size_t)cap);
        if (!n) { moe_free(p); return moe_fail(MOE_ENOMEM, "out of memory"); }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return MOE_OK;
}

/* A tensor's name: the family's prefix (Llama 4's multimodal checkpoints keep the text model under
 * "language_model.") and the formatted rest. */
static void name_of(const moe_model *m, char *buf, size_t cap, const char *fmt, va_list ap) {
    const char *pre = m->cfg.prefix ? m->cfg.prefix : "";
    size_t n = strlen(pre) < cap ? strlen(pre) : cap - 1;
    memcpy(buf, pre, n);
    vsnprintf(buf + n, cap - n, fmt, ap);
}

static void name_fmt(const moe_model *m, char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    name_of(m, buf, cap, fmt, ap);
    va_end(ap);
}

/* A matrix or tensor kept in its file dtype. */
static moe_status get_mat(moe_model *m, moe_tensor *out, int64_t rows, int64_t cols, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    name_of(m, name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[2] = {rows, cols};
    return moe_weights_get(m->weights, name, 2, shape, out);
}

/* A vector converted to f32. */
static moe_status get_vec(moe_model *m, float **out, int64_t n, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    name_of(m, name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[1] = {n};
    MOE_TRY(moe_weights_get_f32(m->weights, name, 1, shape, out));
    return moe_model_keep(m, *out);
}

/* An RMSNorm gain, as the engine applies it: stored w, or 1 + w for families that store it centred at 0. */
static moe_status get_norm(moe_model *m, float **out, int64_t n, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    name_of(m, name, sizeof name, fmt, ap);
    va_end(ap);
    int64_t shape[1] = {n};
    MOE_TRY(moe_weights_get_f32(m->weights, name, 1, shape, out));
    if (m->cfg.norm_plus_one)
        for (int64_t i = 0; i < n; i++) (*out)[i] = 1.0f + (*out)[i];
    return moe_model_keep(m, *out);
}

static int has(moe_model *m, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    name_of(m, name, sizeof name, fmt, ap);
    va_end(ap);
    return moe_weights_has(m->weights, name);
}

static moe_status bind_gqa(moe_model *m, int l, moe_attn_weights *a) {
    const moe_config *c = &m->cfg;
    int d = c->hidden, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const char *p = "model.layers.%d.self_attn.%s";
    MOE_TRY(get_mat(m, &a->wq, c->attn_out_gate ? 2 * qd : qd, d, p, l, "q_proj.weight"));
    MOE_TRY(get_mat(m, &a->wk, kvd, d, p, l, "k_proj.weight"));
    MOE_TRY(get_mat(m, &a->wv, kvd, d, p, l, "v_proj.weight"));
    MOE_TRY(get_mat(m, &a->wo, d, qd, p, l, "o_proj.weight"));
    if (c->qkv_bias) {
        MOE_TRY(get_vec(m, &a->bq, c->attn_out_gate ? 2 * qd : qd, p, l, "q_proj.bias"));
        MOE_TRY(get_vec(m, &a->bk, kvd, p, l, "k_proj.bias"));
        MOE_TRY(get_vec(m, &a->bv, kvd, p, l, "v_proj.bias"));
    }
    if (c->o_bias) MOE_TRY(get_vec(m, &a->bo, d, p, l, "o_proj.bias"));
    if (c->attn_sinks) MOE_TRY(get_vec(m, &a->sinks, c->n_heads, p, l, "sinks"));
    if (c->qk_norm == MOE_QKNORM_HEAD) {
        MOE_TRY(get_norm(m, &a->q_norm, c->head_dim, p, l, "q_norm.weight"));
        MOE_TRY(get_norm(m, &a->k_norm, c->head_dim, p, l, "k_norm.weight"));
    } else if (c->qk_norm == MOE_QKNORM_FULL) {
        MOE_TRY(get_norm(m, &a->q_norm, qd, p, l, "q_norm.weight"));
        MOE_TRY(get_norm(m, &a->k_norm, kvd, p, l, "k_norm.weight"));
    }
    return MOE_OK;
}

static moe_status bind_deltanet(moe_model *m, int l, moe_deltanet_weights *w) {
    const moe_config *c = &m->cfg;
    int d = c->hidden, kd = c->lin_k_heads * c->lin_k_dim, vd = c->lin_v_heads * c->lin_v_dim;
    int64_t C = 2 * kd + vd;
    const char *p = "model.layers.%d.linear_attn.%s";
    MOE_TRY(get_mat(m, &w->in_qkvz, 2 * kd + 2 * vd, d, p, l, "in_proj_qkvz.weight"));
    MOE_TRY(get_mat(m, &w->in_ba, 2 * c->lin_v_heads, d, p, l, "in_proj_ba.weight"));
    MOE_TRY(get_mat(m, &w->out, d, vd, p, l, "out_proj.weight"));
    char name[256];
    name_fmt(m, name, sizeof name, p, l, "conv1d.weight");
    MOE_TRY(moe_weights_get_f32(m->weights, name, 3, (int64_t[]){C, 1, c->lin_conv}, &w->conv));
    MOE_TRY(moe_model_keep(m, w->conv));
    MOE_TRY(get_vec(m, &w->a_log, c->lin_v_heads, p, l, "A_log"));
    MOE_TRY(get_vec(m, &w->dt_bias, c->lin_v_heads, p, l, "dt_bias"));
    return get_vec(m, &w->norm, c->lin_v_dim, p, l, "norm.weight");   /* a plain gain, never 1 + w */
}

static moe_status bind_mla(moe_model *m, int l, moe_attn_weights *a) {
    const moe_config *c = &m->cfg;
    int d = c->hidden, H = c->n_heads, qk = c->qk_nope_dim + c->qk_rope_dim;
    const char *p = "model.layers.%d.self_attn.%s";
    if (c->q_lora_rank) {
        MOE_TRY(get_mat(m, &a->wq_a, c->q_lora_rank, d, p, l, "q_a_proj.weight"));
        if (c->qkv_bias) MOE_TRY(get_vec(m, &a->bq_a, c->q_lora_rank, p, l, "q_a_proj.bias"));
        MOE_TRY(get_vec(m, &a->q_a_norm, c->q_lora_rank, p, l, "q_a_layernorm.weight"));
        MOE_TRY(get_mat(m, &a->wq_b, (int64_t)H * qk, c->q_lora_rank, p, l, "q_b_proj.weight"));
    } else {
        MOE_TRY(get_mat(m, &a->wq, (int64_t)H * qk, d, p, l, "q_proj.weight"));
    }
    MOE_TRY(get_mat(m, &a->wkv_a, c->kv_lora_rank + c->qk_rope_dim, d, p, l, "kv_a_proj_with_mqa.weight"));
    if (c->qkv_bias) MOE_TRY(get_vec(m, &a->bkv_a, c->kv_lora_rank + c->qk_rope_dim, p, l, "kv_a_proj_with_mqa.bias"));
    MOE_TRY(get_vec(m, &a->kv_a_norm, c->kv_lora_rank, p, l, "kv_a_layernorm.weight"));
    MOE_TRY(get_mat(m, &a->wkv_b, (int64_t)H * (c->qk_nope_dim + c->v_head_dim), c->kv_lora_rank, p, l, "kv_b_proj.weight"));
    MOE_TRY(get_mat(m, &a->wo, d, (int64_t)H * c->v_head_dim, p, l, "o_proj.weight"));
    if (c->o_bias) MOE_TRY(get_vec(m, &a->bo, d, p, l, "o_proj.bias"));
    return MOE_OK;
}

static moe_status bind_ffn(moe_model *m, moe_ffn_weights *f, int ff, const char *gate, const char *up,
                           const char *down, const char *prefix) {
    int d = m->cfg.hidden;
    memset(f, 0, sizeof *f);   /* no biases, SwiGLU */
    /* Autonomy-of-Experts: the gate projection is the second factor, [ff][rank] */
    const moe_router_ops *ops = moe_router_find(m->cfg.router);
    int factored = ops && ops->expert_gate_factored && m->cfg.router_rank > 0 && strstr(prefix, ".experts.");
    int gate_cols = factored ? m->cfg.router_rank : d;
    MOE_TRY(get_mat(m, &f->gate, ff, gate_cols, "%s.%s.weight", prefix, gate));
    MOE_TRY(get_mat(m, &f->up, ff, d, "%s.%s.weight", prefix, up));
    MOE_TRY(get_mat(m, &f->down, d, ff, "%s.%s.weight", prefix, down));
    return MOE_OK;
}

/* A view of rows [r0, r0+rows) of a 3-D tensor's slice e, as a 2-D matrix (no copy). */
static moe_tensor slice_rows(const moe_tensor *t, int64_t e, int64_t r0, int64_t rows) {
    moe_tensor v = *t;
    size_t rb = moe_dtype_row_bytes(t->dtype, t->shape[2]);
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = t->shape[2];
    v.data = (const char *)t->data + ((size_t)e * (size_t)t->shape[1] + (size_t)r0) * rb;
    v.nbytes = (size_t)rows * rb;
    return v;
}

/* Experts held in the files: n_experts, or fewer in a merged checkpoint whose router slots share them. */
static int stored_experts(const moe_config *c) { return c->n_stored_experts > 0 ? c->n_stored_experts : c->n_experts; }

/* A merged checkpoint: slot s of the router is served by stored expert map[s] (config_moe.c). The
 * stored experts were bound to slots [0, stored); give every slot its expert's views. */
static moe_status bind_expert_map(moe_model *m, int l, const char *blk) {
    const moe_config *c = &m->cfg;
    int S = c->n_experts, N = stored_experts(c);
    char name[200];
    snprintf(name, sizeof name, "model.layers.%d.%s.moe_expert_map", l, blk);
    int k = moe_strmap_gets(&m->weights->map, name);
    if (k < 0) return moe_fail(MOE_EINPUT, "%s: missing tensor \"%s\" (config.json has moe_expert_slots)", m->weights->source, name);
    const moe_tensor *t = m->weights->list[k];
    const char *path = m->weights->files[m->weights->file_of[k]]->path;
    if (t->dtype != MOE_I32 || t->ndim != 1 || t->shape[0] != S)
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" must be I32 of shape [%d]", path, name, S);
    moe_ffn_weights *w = malloc(sizeof *w * (size_t)N);
    if (!w) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int e = 0; e < N; e++) w[e] = *moe_store_resident_entry(m->store, l, e);
    moe_status st = MOE_OK;
    for (int s = 0; s < S && st == MOE_OK; s++) {
        int32_t v;
        memcpy(&v, (const char *)t->data + 4 * (size_t)s, 4);
        if (v < 0 || v >= N) st = moe_fail(MOE_EINPUT, "%s: tensor \"%s\": slot %d names expert %d of %d", path, name, s, v, N);
        else moe_store_resident_set(m->store, l, s, &w[v]);
    }
    free(w);
    m->weights->used[k] = 1;
    return st;
}

/* transformers 5 can save experts fused: experts.gate_up_proj [E][2I][H] (gate rows first) and
 * experts.down_proj [E][H][I]; granite's checkpoints have the same layout as input_linear / output_linear.
 * Each expert becomes three views into the fused tensors. */
static moe_status bind_fused_experts(moe_model *m, int l, const char *gate_up, const char *down) {
    const moe_config *c = &m->cfg;
    moe_tensor gu, dn;
    int64_t E = stored_experts(c), I = c->moe_intermediate, H = c->hidden;
    char name[256];
    name_fmt(m, name, sizeof name, "%s", gate_up);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, 2 * I, H}, &gu));
    name_fmt(m, name, sizeof name, "%s", down);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, H, I}, &dn));
    for (int e = 0; e < E; e++) {
        moe_ffn_weights w = {.gate = slice_rows(&gu, e, 0, I), .up = slice_rows(&gu, e, I, I), .down = slice_rows(&dn, e, 0, H)};
        moe_store_resident_set(m->store, l, e, &w);
    }
    return MOE_OK;
}

/* GGUF files stack experts per projection (the loader names them experts.gate_proj and
 * experts.up_proj [E][I][H], experts.down_proj [E][H][I]): three views per expert. */
static moe_status bind_stacked_experts(moe_model *m, int l, const char *blk) {
    const moe_config *c = &m->cfg;
    moe_tensor g, u, dn;
    int64_t E = stored_experts(c), I = c->moe_intermediate, H = c->hidden;
    char name[200];
    snprintf(name, sizeof name, "model.layers.%d.%s.experts.gate_proj", l, blk);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, I, H}, &g));
    snprintf(name, sizeof name, "model.layers.%d.%s.experts.up_proj", l, blk);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, I, H}, &u));
    snprintf(name, sizeof name, "model.layers.%d.%s.experts.down_proj", l, blk);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, H, I}, &dn));
    for (int e = 0; e < E; e++) {
        moe_ffn_weights w = {.gate = slice_rows(&g, e, 0, I), .up = slice_rows(&u, e, 0, I), .down = slice_rows(&dn, e, 0, H)};
        moe_store_resident_set(m->store, l, e, &w);
    }
    return MOE_OK;
}

/* The first of the NULL-terminated candidates (def when the family sets none) present as
 * model.layers.L.<blk>.<candidate>, written to out; 0 if none is (out then holds the first). */
static int find_name(moe_model *m, char *out, size_t cap, int l, const char *blk, const char *const *cands,
                     const char *def) {
    const char *one[2] = {def, NULL};
    if (!cands[0]) cands = one;
    for (int i = 0; i < 3 && cands[i]; i++) {
        snprintf(out, cap, "model.layers.%d.%s.%s", l, blk, cands[i]);
        if (has(m, "%s", out)) return i + 1;
    }
    snprintf(out, cap, "model.layers.%d.%s.%s", l, blk, cands[0]);
    return 0;
}

/* A vector of n stored as [n] or [1][n] (ERNIE's moe_statics), converted to f32. */
static moe_status get_row(moe_model *m, float **out, int64_t n, const char *rest) {
    char name[256];
    name_fmt(m, name, sizeof name, "%s", rest);
    int k = moe_strmap_gets(&m->weights->map, name);
    int two = k >= 0 && m->weights->list[k]->ndim == 2;
    MOE_TRY(moe_weights_get_f32(m->weights, name, two ? 2 : 1, two ? (int64_t[]){1, n} : (int64_t[]){n}, out));
    return moe_model_keep(m, *out);
}

/* Rows [r0, r0+rows) of a 2-D tensor, as a view. */
static moe_tensor rows_of(const moe_tensor *t, int64_t r0, int64_t rows) {
    moe_tensor v = *t;
    size_t row = moe_dtype_row_bytes(t->dtype, t->shape[1]);
    v.shape[0] = rows;
    v.data = (const char *)t->data + (size_t)r0 * row;
    v.nbytes = (size_t)rows * row;
    return v;
}

static moe_status bind_shared(moe_model *m, int l, const char *blk, moe_ffn_weights *f) {
    const moe_config *c = &m->cfg;
    char prefix[200];
    if (c->shared_at_layer) snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, c->shared_name);
    else snprintf(prefix, sizeof prefix, "model.layers.%d.%s.%s", l, blk, c->shared_name);
    if (!c->shared_fused)
        return bind_ffn(m, f, c->shared_intermediate, "gate_proj", "up_proj", "down_proj", prefix);
    int64_t S = c->shared_intermediate;
    moe_tensor gu;
    MOE_TRY(get_mat(m, &gu, 2 * S, c->hidden, "%s.input_linear.weight", prefix));
    f->gate = rows_of(&gu, 0, S);
    f->up = rows_of(&gu, S, S);
    return get_mat(m, &f->down, c->hidden, S, "%s.output_linear.weight", prefix);
}

/* rows x cols matrix of esz-byte elements at src (row stride src_ld elements) -> its transpose at dst */
static void transpose(void *dst, const void *src, int64_t rows, int64_t cols, int64_t src_ld, size_t esz) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            memcpy((char *)dst + ((size_t)c * rows + r) * esz, (const char *)src + ((size_t)r * src_ld + c) * esz, esz);
}

/* Llama 4 stores fused experts [in][out]: gate_up_proj [E][H][2I] (gate columns first), down_proj
 * [E][I][H]. The products want [out][in], so each expert is transposed once at load into memory of the
 * file's dtype (the values are unchanged; these experts are then resident, not mapped, and cannot be
 * read from disk under an expert budget). Only types with one element per block can be transposed. */
static moe_status bind_in_out_experts(moe_model *m, int l, const char *gate_up, const char *down) {
    const moe_config *c = &m->cfg;
    moe_tensor gu, dn;
    int64_t E = stored_experts(c), I = c->moe_intermediate, H = c->hidden;
    char name[256];
    name_fmt(m, name, sizeof name, "%s", gate_up);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, H, 2 * I}, &gu));
    name_fmt(m, name, sizeof name, "%s", down);
    MOE_TRY(moe_weights_get(m->weights, name, 3, (int64_t[]){E, I, H}, &dn));
    size_t esz = moe_dtype_size(gu.dtype);
    if (!esz || moe_dtype_size(dn.dtype) != esz || gu.dtype != dn.dtype || !moe_gemm_pick(gu.dtype))
        return moe_fail(MOE_EINPUT, "%s: the [in][out] experts of layer %d (\"%s\" %s, \"%s\" %s) must both be F32, BF16 or F16",
                        moe_weights_file_of(m->weights, name), l, gu.name, moe_dtype_name(gu.dtype), dn.name,
                        moe_dtype_name(dn.dtype));
    size_t per = (size_t)(3 * I * H) * esz;
    char *buf = moe_alloc(per * (size_t)E);
    if (!buf) return moe_fail(MOE_ENOMEM, "out of memory for the experts of layer %d", l);
    MOE_TRY(moe_model_keep(m, buf));
    for (int64_t e = 0; e < E; e++) {
        char *g = buf + (size_t)e * per, *u = g + (size_t)(I * H) * esz, *dd = u + (size_t)(I * H) * esz;
        const char *src = (const char *)gu.data + (size_t)(e * H * 2 * I) * esz;
        transpose(g, src, H, I, 2 * I, esz);
        transpose(u, src + (size_t)I * esz, H, I, 2 * I, esz);
        transpose(dd, (const char *)dn.data + (size_t)(e * I * H) * esz, I, H, H, esz);
        moe_ffn_weights w = {.gate = {gu.dtype, 2, {I, H}, g, (size_t)(I * H) * esz, gu.name},
                             .up = {gu.dtype, 2, {I, H}, u, (size_t)(I * H) * esz, gu.name},
                             .down = {dn.dtype, 2, {H, I}, dd, (size_t)(I * H) * esz, dn.name}};
        moe_store_resident_set(m->store, l, (int)e, &w);
    }
    return MOE_OK;
}

static moe_status bind_moe(moe_model *m, int l, moe_block *b) {
    const moe_config *c = &m->cfg;
    moe_layer *L = &b->moe;
    char prefix[160], router[200], name[200], down[200];
    /* the block is named per family (block_sparse_moe for Mixtral) or "mlp" in transformers 5 */
    const char *blk = c->moe_block;
    if (!find_name(m, router, sizeof router, l, blk, c->router_names, "gate.weight") &&
        find_name(m, name, sizeof name, l, "mlp", c->router_names, "gate.weight")) {
        blk = "mlp";
        find_name(m, router, sizeof router, l, blk, c->router_names, "gate.weight");
    }
    int fused = find_name(m, name, sizeof name, l, blk, c->fused_gate_up_names, "experts.gate_up_proj");
    if (fused) snprintf(down, sizeof down, "model.layers.%d.%s.%s", l, blk,
                        c->fused_down_names[0] ? c->fused_down_names[fused - 1] : "experts.down_proj");
    int stacked = !fused && has(m, "model.layers.%d.%s.experts.gate_proj", l, blk);   /* GGUF */
    L->layer = l;
    L->d_model = c->hidden;
    L->d_expert = c->moe_intermediate;
    L->store = m->store;
    L->weight_on_input = c->expert_input_weighted;
    L->router.ops = moe_router_find(c->router);
    if (!L->router.ops) return moe_fail(MOE_EINTERNAL, "no router named %s", c->router);
    L->router.p = (moe_router_params){.n_experts = c->n_experts, .top_k = c->top_k, .d_model = c->hidden,
                                      .norm_topk_prob = c->norm_topk_prob, .routed_scaling = c->routed_scaling,
                                      .n_group = c->n_group, .topk_group = c->topk_group,
                                      .group_limited = c->group_limited, .norm_min = c->norm_min,
                                      .jitter_eps = c->jitter_eps, .capacity_factor = c->capacity_factor,
                                      .top_p = c->top_p, .slots = c->slots, .rank = c->router_rank,
                                      .seed = c->router_seed};
    int nl = moe_router_n_logits(&L->router);   /* n_experts, or experts * slots (soft), experts * rank (aoe), 0 */
    if (nl > 0) MOE_TRY(get_mat(m, &L->router.gate, nl, c->hidden, "%s", router));
    if (nl > 0 && c->router_bias) {   /* "<router>.bias" beside "<router>.weight" */
        size_t n = strlen(router), w = strlen(".weight");
        float *rb;
        if (n > w && !strcmp(router + n - w, ".weight")) router[n - w] = 0;
        MOE_TRY(get_vec(m, &rb, nl, "%s.bias", router));
        L->router.gate_bias = rb;
    }
    if (c->has_score_bias) {
        float *bias;
        char bname[200];
        find_name(m, bname, sizeof bname, l, blk, c->score_bias_names, "gate.e_score_correction_bias");
        MOE_TRY(get_row(m, &bias, c->n_experts, bname));
        L->router.score_bias = bias;
    }
    if (fused && c->experts_in_out) MOE_TRY(bind_in_out_experts(m, l, name, down));
    else if (fused && (c->fused_interleaved || c->fused_transposed || c->expert_bias))
        MOE_TRY(moe_bind_fused_repacked(m, l, name, down));
    else if (fused) MOE_TRY(bind_fused_experts(m, l, name, down));
    else if (stacked) MOE_TRY(bind_stacked_experts(m, l, blk));
    else if (!c->expert_gate) /* a family whose checkpoints always fuse their experts (granite) */
        return moe_fail(MOE_EINPUT, "%s: no tensor \"%s\"", moe_weights_file_of(m->weights, name), name);
    for (int e = 0; e < stored_experts(c) && !fused && !stacked; e++) {
        moe_ffn_weights w;
        snprintf(prefix, sizeof prefix, "model.layers.%d.%s.experts.%d", l, blk, e);
        MOE_TRY(bind_ffn(m, &w, c->moe_intermediate, c->expert_gate, c->expert_up, c->expert_down, prefix));
        moe_store_resident_set(m->store, l, e, &w);
    }
    for (int e = 0; e < stored_experts(c) && c->expert_act; e++)   /* the family's expert activation */
        moe_store_resident_entry(m->store, l, e)->act =
            (moe_ffn_act){c->expert_act, (float)c->act_alpha, (float)c->act_limit};
    if (c->n_stored_experts > 0) MOE_TRY(bind_expert_map(m, l, blk));
    if (c->shared_intermediate > 0) {
        L->has_shared = 1;
        MOE_TRY(bind_shared(m, l, blk, &L->shared));
    }
    if (c->shared_gate) {
        L->has_shared_gate = 1;
        MOE_TRY(get_mat(m, &L->shared_gate, 1, c->hidden, "model.layers.%d.%s.shared_expert_gate.weight", l, blk));
    }
    return MOE_OK;
}

static uint64_t tbytes(const moe_tensor *t) { return t->data ? t->nbytes : 0; }
static uint64_t tnumel(const moe_tensor *t) { return t->data ? (uint64_t)moe_tensor_numel(t) : 0; }

/* Count parameters and bytes read per token: every bound tensor counts once; of each MoE layer's
 * routed experts only top_k are active and read. */
static void compute_info(moe_model *m) {
    const moe_config *c = &m->cfg;
    moe_model_info *I = &m->info;
    uint64_t params = 0, active = 0, bytes = 0, dt_bytes[MOE_DTYPE_COUNT] = {0};
    for (int i = 0; i < m->weights->n; i++) {
        const moe_tensor *t = m->weights->list[i];
        if (!m->weights->used[i]) continue;
        /* buffers, not parameters: DeepSeek-V3's routing bias (except in ERNIE, which keeps it as a parameter of
         * its moe_statics) and GGUF's rope frequency divisors */
        int is_bias_buffer = (strstr(t->name, "e_score_correction_bias") && !strstr(t->name, "moe_statics")) ||
                             !strcmp(t->name, "rope_freqs.weight");
        if (strstr(t->name, ".moe_expert_map")) continue;   /* a merged checkpoint's slot map: read once at load */
        if (!is_bias_buffer) params += (uint64_t)moe_tensor_numel(t);
        dt_bytes[t->dtype] += t->nbytes;
        bytes += t->nbytes;
    }
    active = params;
    uint64_t expert_bytes_inactive = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (c->ffn_kind[l] != MOE_FFN_MOE) continue;
        for (int e = 0; e < stored_experts(c); e++) {   /* merged checkpoints: slots share the stored experts */
            moe_ffn_weights w;
            moe_store_acquire(m->store, l, e, &w);
            uint64_t n = tnumel(&w.gate) + tnumel(&w.up) + tnumel(&w.down);
            n += (w.gate_bias ? (uint64_t)w.gate.shape[0] : 0) + (w.up_bias ? (uint64_t)w.up.shape[0] : 0) +
                 (w.down_bias ? (uint64_t)w.down.shape[0] : 0);
            uint64_t b = tbytes(&w.gate) + tbytes(&w.up) + tbytes(&w.down);
            moe_store_release(m->store, l, e);
            if (e >= c->top_k) { active -= n; expert_bytes_inactive += b; } /* experts are equal-sized */
        }
    }
    /* the embedding table is read one row per token; a tied head reads it whole */
    uint64_t emb_bytes = tbytes(&m->embed), row = emb_bytes / (uint64_t)c->vocab;
    bytes = bytes - expert_bytes_inactive - (c->tie_embeddings ? 0 : emb_bytes - row);
    int best = MOE_F32;
    for (int t = 0; t < MOE_DTYPE_COUNT; t++)
        if (dt_bytes[t] > dt_bytes[best]) best = t;
    snprintf(m->dtype_name, sizeof m->dtype_name, "%s", moe_dtype_name((moe_dtype)best));
    int n_moe = 0;
    for (int l = 0; l < c->n_layers; l++) n_moe += c->ffn_kind[l] == MOE_FFN_MOE;
    I->model_type = c->model_type;
    I->weight_dtype = m->dtype_name;
    I->format = m->weights->format;
    I->n_layers = c->n_layers;
    I->n_moe_layers = n_moe;
    I->hidden_size = c->hidden;
    I->vocab_size = c->vocab;
    I->n_heads = c->n_heads;
    I->n_kv_heads = c->n_kv_heads;
    I->n_experts = n_moe ? c->n_experts : 0;
    I->n_stored_experts = n_moe ? stored_experts(c) : 0;
    I->top_k = n_moe ? c->top_k : 0;
    I->n_shared_experts = n_moe ? c->n_shared_experts : 0;
    I->max_position = c->max_pos;
    I->n_params = params;
    I->n_active_params = active;
    I->bytes_per_token = bytes;
    I->bos_token_id = c->bos_token_id;
    I->n_eos = c->n_eos;
    for (int i = 0; i < c->n_eos; i++) I->eos_token_id[i] = c->eos_token_id[i];
}

static int ends_with(const char *s, const char *blk, const char *name) {
    char suf[160];
    snprintf(suf, sizeof suf, ".%s.%s", blk, name);
    size_t n = strlen(s), k = strlen(suf);
    return n > k && !strcmp(s + n - k, suf);
}

/* Is this the name of a layer's fused gate/up expert tensor? */
static int fused_name(const moe_config *c, const char *name) {
    static const char *const def[2] = {"experts.gate_up_proj", NULL};
    const char *const *cands = c->fused_gate_up_names[0] ? c->fused_gate_up_names : def;
    for (int i = 0; i < 3 && cands[i]; i++)
        if ((c->moe_block && ends_with(name, c->moe_block, cands[i])) || ends_with(name, "mlp", cands[i])) return 1;
    return 0;
}

moe_status moe_model_bind(moe_model *m) {
    const moe_config *c = &m->cfg;
    int d = c->hidden, n_moe = 0;
    for (int l = 0; l < c->n_layers; l++) n_moe += c->ffn_kind[l] == MOE_FFN_MOE;
    /* The expert table is sized by config.json alone (up to 1024 layers x 65536 experts); refuse a
     * config the files cannot match before allocating it, instead of failing on the first tensor. */
    uint64_t need = 3ull * (uint64_t)stored_experts(c) * (uint64_t)n_moe;
    for (int i = 0; i < m->weights->n; i++) { /* fused experts (transformers 5, granite): 2 tensors per layer; GGUF: 3 */
        const moe_tensor *t = m->weights->list[i];
        int fused = fused_name(c, t->name), stacked = !fused && ends_with(t->name, "mlp", "experts.gate_proj");
        if (fused || stacked) {
            if (t->ndim != 3 || t->shape[0] != stored_experts(c))
                return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" does not hold config.json's %d experts",
                                m->weights->files[m->weights->file_of[i]]->path, t->name, stored_experts(c));
            need = (fused ? 2ull : 3ull) * (uint64_t)n_moe;
            break;
        }
    }
    if (need > (uint64_t)m->weights->n)
        return moe_fail(MOE_EINPUT, "%s: holds %d tensors, but config.json's %d experts in %d MoE layers need %llu expert tensors",
                        m->weights->source, m->weights->n, c->n_experts, n_moe, (unsigned long long)need);
    m->store = moe_store_resident_new(c->n_layers, n_moe ? c->n_experts : 0);
    m->blocks = calloc((size_t)c->n_layers, sizeof *m->blocks);
    if (!m->store || !m->blocks) return moe_fail(MOE_ENOMEM, "out of memory");
    MOE_TRY(get_mat(m, &m->embed, c->vocab, d, "model.embed_tokens.weight"));
    MOE_TRY(get_norm(m, &m->final_norm, d, "model.norm.weight"));
    if (c->norm == MOE_NORM_LAYER) MOE_TRY(get_vec(m, &m->final_norm_b, d, "model.norm.bias"));
    if (c->tie_embeddings && !has(m, "lm_head.weight")) m->lm_head = m->embed;
    else MOE_TRY(get_mat(m, &m->lm_head, c->vocab, d, "lm_head.weight"));
    if (c->lm_head_bias) MOE_TRY(get_vec(m, &m->lm_head_b, c->vocab, "lm_head.bias"));
    char prefix[128];
    for (int l = 0; l < c->n_layers; l++) {
        moe_block *b = &m->blocks[l];
        MOE_TRY(get_norm(m, &b->attn_norm, d, "model.layers.%d.input_layernorm.weight", l));
        MOE_TRY(get_norm(m, &b->ffn_norm, d, "model.layers.%d.post_attention_layernorm.weight", l));
        if (c->norm == MOE_NORM_LAYER) {
            MOE_TRY(get_vec(m, &b->attn_norm_b, d, "model.layers.%d.input_layernorm.bias", l));
            MOE_TRY(get_vec(m, &b->ffn_norm_b, d, "model.layers.%d.post_attention_layernorm.bias", l));
        }
        b->mixer = c->mixer[l];
        if (b->mixer == MOE_MIXER_DELTANET) MOE_TRY(bind_deltanet(m, l, &b->lin));
        else MOE_TRY(c->mla ? bind_mla(m, l, &b->attn) : bind_gqa(m, l, &b->attn));
        b->ffn_kind = c->ffn_kind[l];
        if (b->ffn_kind == MOE_FFN_MOE) {
            MOE_TRY(bind_moe(m, l, b));
        } else {
            snprintf(prefix, sizeof prefix, "model.layers.%d.%s", l, c->ffn_name ? c->ffn_name : "mlp");
            MOE_TRY(bind_ffn(m, &b->dense, c->intermediate, "gate_proj", "up_proj", "down_proj", prefix));
        }
    }
    MOE_TRY(moe_rope_init(&m->rope, &c->rope));
    compute_info(m);
    return MOE_OK;
}

/* Rotary inv_freq buffers saved by old checkpoints are harmless; other stray tensors may mean the
 * checkpoint is not what config.json says, so say so (once, on stderr). */
static void warn_unused(const moe_model *m, const char *dir) {
    int n = 0;
    const char *first = NULL;
    for (int i = 0; i < m->weights->n; i++) {
        const char *name = m->weights->list[i]->name;
        if (m->weights->used[i] || strstr(name, "rotary_emb.inv_freq")) continue;
        int expected = 0;
        for (int j = 0; j < 2; j++)
            expected |= m->cfg.unused_ok[j] && !strncmp(name, m->cfg.unused_ok[j], strlen(m->cfg.unused_ok[j]));
        if (expected) continue;
        if (!n++) first = name;
    }
    if (n) fprintf(stderr, "moe: warning: %s: %d tensors not used by %s, e.g. \"%s\"\n", dir, n, m->cfg.model_type, first);
}

/* Load with the weights mapped (in_memory == 0) or read into memory. dir is a Hugging Face folder or
 * a GGUF file. */
moe_status moe_model_load_mem(const char *dir, int in_memory, moe_model **out) {
    *out = NULL;
    moe_clear_error();
    struct stat sb;
    if (stat(dir, &sb) != 0) return moe_fail(MOE_EINPUT, "%s: no such model folder or file", dir);
    int gguf = S_ISREG(sb.st_mode) && moe_gguf_is_file(dir);
    if (!S_ISDIR(sb.st_mode) && !gguf)
        return moe_fail(MOE_EINPUT, "%s: not a folder (a Hugging Face model) or a GGUF file", dir);
    moe_model *m = calloc(1, sizeof *m);
    if (!m) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_status st;
    if (gguf) {
        st = moe_gguf_model_open(dir, in_memory, &m->cfg, &m->weights);
    } else {
        st = moe_config_load(dir, &m->cfg);
        if (st == MOE_OK) st = moe_weights_open_ex(dir, in_memory, &m->weights);
    }
    if (st == MOE_OK) st = moe_model_bind(m);
    if (st == MOE_OK && gguf) st = moe_gguf_after_bind(m);
    if (st == MOE_OK) warn_unused(m, dir);
    if (st == MOE_OK && in_memory) st = moe_model_pack_decode(m);
    if (st != MOE_OK) { moe_model_free(m); return st; }
    *out = m;
    return MOE_OK;
}

moe_status moe_model_load(const char *dir, moe_model **out) { return moe_model_load_mem(dir, 0, out); }

void moe_model_free(moe_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) moe_free(m->owned[i]);
    free(m->owned);
    free(m->blocks);
    moe_store_destroy(m->store);
    moe_route_policy_free(m->policy);
    moe_st_close(m->predictor);
    moe_rope_free(&m->rope);
    moe_weights_close(m->weights);
    free(m);
}

const moe_model_info *moe_model_get_info(const moe_model *m) { return &m->info; }

void moe_model_prefault(moe_model *m) { moe_weights_prefault(m->weights); }
