/* attention.h - causal self-attention over a KV cache: grouped-query attention (Llama, Mixtral, Qwen,
 * OLMoE) and multi-head latent attention (DeepSeek). Both write the new keys and values into the
 * cache at their positions, then attend each new token to every cached position up to its own
 * (within the layer's sliding window, if any). */
#ifndef MOE_MODEL_ATTENTION_H
#define MOE_MODEL_ATTENTION_H
#include "core/arena.h"
#include "model/model.h"

/* A layer's part of the session: keys and values for attention, or the recurrent state of a linear-
 * attention layer (model/deltanet.h), valid for the positions before the session's position. */
typedef struct moe_kv_layer {
    float *k;   /* [max_ctx][n_kv][k_dim] */
    float *v;   /* [max_ctx][n_kv][v_dim] */
    float *conv;/* linear attention: the last kernel-1 inputs of the convolution [kernel-1][channels] */
    float *rec; /* linear attention: the delta-rule state [Hv][dv][dk] */
} moe_kv_layer;

/* Per-head key and value widths the cache stores for this model. */
void moe_attention_dims(const moe_config *c, int *n_kv, int *k_dim, int *v_dim);

/* out[n][hidden] = the layer's token mixer (attention, or linear attention for MOE_MIXER_DELTANET layers)
 * applied to h[n][hidden] at positions pos0..pos0+n-1. */
moe_status moe_attention_forward(const moe_model *m, int layer, const float *h, int n, int pos0, moe_kv_layer *kv,
                                 float *out, moe_arena *scratch);

/* Rows [row0, row0+n) of a batched step: one sequence's new tokens at positions pos0.., with its cache. */
typedef struct moe_attn_seq {
    int row0, n, pos0;
    moe_kv_layer *kv;
} moe_attn_seq;

/* The same for several sequences at once: seqs partition the n_rows rows of h and out. The q/k/v and
 * output projections run over all rows together; each row attends to its own sequence's cache. Every
 * row's result is what moe_attention_forward gives for its sequence alone, up to the last bits of the
 * projections (whose kernels block by row count). */
moe_status moe_attention_forward_seqs(const moe_model *m, int layer, const float *h, int n_rows, const moe_attn_seq *seqs,
                                      int n_seqs, float *out, moe_arena *scratch);
#endif
