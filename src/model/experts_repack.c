/* experts_repack.c - fused expert tensors in a layout the executor cannot view in place, repacked once
 * at load into the layout it runs (per expert: gate [I][H], up [I][H], down [H][I], rows [out][in]),
 * in the file's dtype, so that the products are the same kernels every family uses.
 * gpt-oss (transformers' GptOssExperts): gate_up_proj alternates gate and up (output 2i is gate i,
 * 2i+1 is up i) and, in float types, is stored for x . W: gate_up_proj [E][H][2I], down_proj [E][I][H];
 * biases gate_up_proj_bias [E][2I] (alternating too) and down_proj_bias [E][H]. Its released
 * checkpoints hold the matrices as MXFP4, joined at load into block rows [E][2I][H] and [E][H][I]
 * (io/weights.c): those keep their rows and only the gate/up rows are reordered, in place when the
 * loader owns the bytes (it always does for joined types), so 4-bit experts are never expanded.
 * The repacked bytes are the model's own memory: such experts cannot be read from the file under a
 * memory budget (offload.c says so). */
#include "core/alloc.h"
#include "core/error.h"
#include "model/model.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A view of rows [r0, r0+rows) of slice e of a 3-D tensor as a 2-D matrix. */
static moe_tensor rows_view(const moe_tensor *t, int64_t e, int64_t r0, int64_t rows) {
    moe_tensor v = *t;
    size_t rb = moe_dtype_row_bytes(t->dtype, t->shape[2]);
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = t->shape[2];
    v.data = (const char *)t->data + ((size_t)e * (size_t)t->shape[1] + (size_t)r0) * rb;
    v.nbytes = (size_t)rows * rb;
    return v;
}

/* Where output j of an alternating gate/up tensor of 2I outputs goes: gate i = 2i first, then up. */
static int64_t deint(int64_t j, int64_t I, int interleaved) { return interleaved ? (j & 1) * I + j / 2 : j; }

static void *new_buf(moe_model *m, size_t n, const char *name, moe_status *st) {
    void *p = moe_alloc(n ? n : 1);
    if (!p) { *st = moe_fail(MOE_ENOMEM, "out of memory repacking \"%s\"", name); return NULL; }
    if ((*st = moe_model_keep(m, p)) != MOE_OK) return NULL;
    return p;
}

/* src [E][R][C] of element size es -> dst [E][C][R] (out rows permuted by perm of 2I when given). */
static void transpose(const char *src, char *dst, int64_t E, int64_t R, int64_t C, size_t es, int64_t I, int interleaved) {
    for (int64_t e = 0; e < E; e++) {
        const char *s = src + (size_t)(e * R * C) * es;
        char *d = dst + (size_t)(e * R * C) * es;
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < C; j++) {
                int64_t o = I ? deint(j, I, interleaved) : j;
                memcpy(d + (size_t)(o * R + r) * es, s + (size_t)(r * C + j) * es, es);
            }
    }
}

/* Reorder the 2I rows of each expert so that gate rows come first (dst may be src). */
static moe_status deinterleave_rows(const char *src, char *dst, int64_t E, int64_t I, size_t rb) {
    size_t eb = (size_t)(2 * I) * rb;
    char *tmp = moe_alloc(eb);
    if (!tmp) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int64_t e = 0; e < E; e++) {
        memcpy(tmp, src + (size_t)e * eb, eb);
        for (int64_t j = 0; j < 2 * I; j++) memcpy(dst + (size_t)e * eb + (size_t)deint(j, I, 1) * rb, tmp + (size_t)j * rb, rb);
    }
    moe_free(tmp);
    return MOE_OK;
}

moe_status moe_bind_fused_repacked(moe_model *m, int l, const char *gu_name, const char *dn_name) {
    const moe_config *c = &m->cfg;
    moe_weights *W = m->weights;
    int64_t E = c->n_stored_experts > 0 ? c->n_stored_experts : c->n_experts, I = c->moe_intermediate, H = c->hidden;
    int k = moe_strmap_gets(&W->map, gu_name);
    /* block types are rows [out][in] whatever the family stores its float tensors as */
    int transposed = c->fused_transposed && k >= 0 && moe_dtype_block(W->list[k]->dtype) == 1;
    moe_tensor gu, dn;
    if (transposed) {
        MOE_TRY(moe_weights_get(W, gu_name, 3, (int64_t[]){E, H, 2 * I}, &gu));
        MOE_TRY(moe_weights_get(W, dn_name, 3, (int64_t[]){E, I, H}, &dn));
        if (moe_dtype_block(dn.dtype) != 1)
            return moe_fail(MOE_EINPUT, "%s: \"%s\" is %s but \"%s\" is %s: the fused experts mix layouts",
                            moe_weights_file_of(W, dn_name), dn_name, moe_dtype_name(dn.dtype), gu_name, moe_dtype_name(gu.dtype));
        moe_status st = MOE_OK;
        size_t gs = moe_dtype_size(gu.dtype), ds = moe_dtype_size(dn.dtype);
        char *g = new_buf(m, (size_t)(E * 2 * I * H) * gs, gu_name, &st);
        char *d = st == MOE_OK ? new_buf(m, (size_t)(E * H * I) * ds, dn_name, &st) : NULL;
        if (st != MOE_OK) return st;
        transpose(gu.data, g, E, H, 2 * I, gs, I, c->fused_interleaved);
        transpose(dn.data, d, E, I, H, ds, 0, 0);
        gu.shape[1] = 2 * I; gu.shape[2] = H; gu.data = g;
        dn.shape[1] = H; dn.shape[2] = I; dn.data = d;
    } else {
        MOE_TRY(moe_weights_get(W, gu_name, 3, (int64_t[]){E, 2 * I, H}, &gu));
        MOE_TRY(moe_weights_get(W, dn_name, 3, (int64_t[]){E, H, I}, &dn));
        if (c->fused_interleaved) {
            char *dst = moe_weights_writable(W, &gu);
            moe_status st = MOE_OK;
            if (!dst && !(dst = new_buf(m, gu.nbytes, gu_name, &st))) return st;
            MOE_TRY(deinterleave_rows(gu.data, dst, E, I, moe_dtype_row_bytes(gu.dtype, H)));
            gu.data = dst;
        }
    }
    float *gb = NULL, *ub = NULL, *db = NULL, *gub = NULL;
    if (c->expert_bias) {
        char name[300];
        snprintf(name, sizeof name, "%s_bias", gu_name);
        MOE_TRY(moe_weights_get_f32(W, name, 2, (int64_t[]){E, 2 * I}, &gub));
        moe_status st = moe_model_keep(m, gub);
        gb = st == MOE_OK ? new_buf(m, sizeof(float) * (size_t)(E * 2 * I), name, &st) : NULL;
        if (st != MOE_OK) return st;
        ub = gb + E * I;
        for (int64_t e = 0; e < E; e++)
            for (int64_t j = 0; j < 2 * I; j++) {
                int64_t o = deint(j, I, c->fused_interleaved);
                (o < I ? gb + e * I : ub + e * I)[o % I] = gub[e * 2 * I + j];
            }
        snprintf(name, sizeof name, "%s_bias", dn_name);
        MOE_TRY(moe_weights_get_f32(W, name, 2, (int64_t[]){E, H}, &db));
        MOE_TRY(moe_model_keep(m, db));
    }
    for (int64_t e = 0; e < E; e++) {
        moe_ffn_weights w = {.gate = rows_view(&gu, e, 0, I), .up = rows_view(&gu, e, I, I), .down = rows_view(&dn, e, 0, H)};
        if (gb) { w.gate_bias = gb + e * I; w.up_bias = ub + e * I; w.down_bias = db + e * H; }
        moe_store_resident_set(m->store, l, (int)e, &w);
    }
    return MOE_OK;
}
