/* moe_layer.h - one sparse MoE block:
 *   router -> top-k expert ids and weights -> tokens grouped per expert (a counting sort, no padding)
 *   -> each used expert's SwiGLU as one product over its tokens -> weighted scatter-add -> + shared
 *   experts (optionally gated by sigmoid(x . w), as in Qwen2-MoE).
 * The routing hook sees every decision; the expert store supplies the weights. */
#ifndef MOE_MOE_MOE_LAYER_H
#define MOE_MOE_MOE_LAYER_H
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
} moe_layer;

/* out[n][d_model] = MoE(x). pos[n] are absolute positions (for the hook and the store).
 * When the store asks for it (predict_next), the next MoE layer's router is applied to x to guess that
 * layer's experts (the cross-layer gate of Fate and Pre-gated MoE): the residual stream changes little
 * from one layer to the next, so the guess is usually right, and its reads overlap this layer's work. */
moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user);
#endif
