/* moe_layer.h - one sparse MoE block:
 *   router -> top-k expert ids and weights -> tokens grouped per expert (a counting sort, no padding)
 *   -> each used expert's SwiGLU as one product over its tokens -> weighted scatter-add -> + shared
 *   experts (optionally gated by sigmoid(x . w), as in Qwen2-MoE).
 * The routing hook sees every decision; the expert store supplies the weights. Routers with a
 * variable number of experts per token report it padded to the largest count with expert id -1. */
#ifndef MOE_MOE_MOE_LAYER_H
#define MOE_MOE_MOE_LAYER_H
#include "core/arena.h"
#include "moe/expert_store.h"
#include "moe/router.h"

typedef struct moe_layer {
    int layer;                 /* transformer layer index (hook, store) */
    int d_model;
    int d_expert;              /* routed experts' FFN width */
    moe_router router;
    moe_store *store;          /* routed experts */
    int has_shared;
    moe_ffn_weights shared;    /* always-on experts, fused into one FFN */
    int has_shared_gate;
    moe_tensor shared_gate;    /* [1][d_model] */
    const struct moe_layer *next; /* the next MoE layer, whose router predicts prefetches (or NULL) */
    const float *norm;            /* [d_model] gain of the RMSNorm before this layer (for predictions), or NULL */
    float norm_eps;
    const float *pred_w[2];       /* fitted predictor of this layer's experts (moe/predictor.h), per guess */
    const float *pred_b[2];       /* [n_experts][d_model] and [n_experts]; NULL: the router's own gate */
} moe_layer;

/* out[n][d_model] = MoE(x). pos[n] are absolute positions (for the hook and the store). Scratch comes
 * from the arena and is released before returning.
 * When the store asks for it (predict_next), the next MoE layer's router is applied to x to guess that
 * layer's experts (the cross-layer gate of Fate and Pre-gated MoE): the residual stream changes little
 * from one layer to the next, so the guess is usually right, and its reads overlap this layer's work.
 * moe_layer_after makes a second guess once this layer's output is in the residual stream (the early
 * and late guesses of moe/predictor.h). */
moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user, moe_arena *scratch);
/* After the layer's output was added to the residual stream resid[n][d_model]: a second, better guess
 * of the next MoE layer's experts from the residual itself (it lacks only the next attention). */
moe_status moe_layer_after(const moe_layer *L, const float *resid, int n, moe_arena *scratch);
/* The same with the input token ids, which the hash router needs (may be NULL for other routers).
 * Routers of the general form (router.h `route`) run here: a variable number of experts per token
 * (expert choice, capacity drops, top-p, sparsemax, BASE), Soft MoE's slot mixing, and Autonomy-of-
 * Experts, whose experts' gate projections start from the router's low-rank outputs. The batch of
 * batch-level routers is the n tokens of this call. */
moe_status moe_layer_forward_tokens(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                    float *out, moe_route_hook hook, void *hook_user, moe_arena *scratch);
#endif
