/* moe_layer.h - one sparse MoE block, the same steps for every router:
 *   gate projection -> router -> a routing decision (router.h moe_assign) -> optional transform of the
 *   decision -> grouped by expert -> routing hook -> the expert store hears what will run -> the
 *   expert executor (experts.h) runs and combines the routed experts -> + shared experts (optionally
 *   gated by sigmoid(x . w), as in Qwen2-MoE), added in one place for every router.
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
    int weight_on_input;       /* an expert runs on weight * x and its output is added unscaled (Llama 4),
                                * instead of weight * expert(x) */
    int has_shared;
    moe_ffn_weights shared;    /* always-on experts, fused into one FFN */
    int has_shared_gate;
    moe_tensor shared_gate;    /* [1][d_model] */
    const struct moe_layer *next; /* the next MoE layer, whose router predicts prefetches (or NULL) */
    const float *norm;            /* [d_model] gain of the RMSNorm before this layer (for predictions), or NULL */
    float norm_eps;
    const float *pred_w[2];       /* fitted predictor of this layer's experts (moe/predictor.h), per guess */
    const float *pred_b[2];       /* [n_experts][d_model] and [n_experts]; NULL: the router's own gate */
    struct moe_ep *ep;            /* expert parallelism (moe/ep.h): this rank runs only its experts; or NULL */
} moe_layer;

/* A transform of the decision, after the router and before anything runs: it may drop, add or
 * reweight assignments (tok, exp, w; a->n) but not touch the grouped view, which is built after it.
 * The point where dynamic routing (a weight threshold, a per-layer k, top-p over a->probs, capacity
 * drops), steering (disable or force experts) and pruning (masks) apply to every router alike.
 * Soft MoE decisions (a->dispatch) have no assignments to edit. */
typedef moe_status (*moe_route_transform)(void *user, const struct moe_layer *L, const moe_route_in *in, moe_assign *a);

/* What one call of the layer sees besides its input. */
typedef struct moe_layer_io {
    const int *pos;           /* [n] absolute positions (hook, store, THOR); may be NULL */
    const int32_t *tokens;    /* [n] input token ids (hash routing); may be NULL for other routers */
    moe_route_hook hook;      /* sees the decision as executed; may be NULL */
    void *hook_user;
    moe_route_transform transform;   /* may be NULL */
    void *transform_user;
    uint64_t *counts;         /* [2], may be NULL: += tokens and the assignments executed for them (atomic) */
} moe_layer_io;

/* out[n][d_model] = MoE(x) for any router. The batch of batch-level routers (expert choice, capacity,
 * BASE, Soft MoE's group) is the n tokens of this call. Scratch comes from the arena and is released
 * before returning.
 * When the store asks for it (predict_next), the next MoE layer's router is applied to x to guess that
 * layer's experts (the cross-layer gate of Fate and Pre-gated MoE): the residual stream changes little
 * from one layer to the next, so the guess is usually right, and its reads overlap this layer's work.
 * moe_layer_after makes a second guess once this layer's output is in the residual stream (the early
 * and late guesses of moe/predictor.h). */
moe_status moe_layer_run(const moe_layer *L, const float *x, int n, const moe_layer_io *io, float *out,
                         moe_arena *scratch);
/* moe_layer_run with positions, token ids (may be NULL) and a hook, without a transform. */
moe_status moe_layer_forward_tokens(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                    float *out, moe_route_hook hook, void *hook_user, moe_arena *scratch);
/* The same without token ids. */
moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user, moe_arena *scratch);
/* After the layer's output was added to the residual stream resid[n][d_model]: a second, better guess
 * of the next MoE layer's experts from the residual itself (it lacks only the next attention). */
/* Expert parallelism (moe/ep.h): the routed experts' output out[n][d_model] of a grouped decision,
 * computed by the ranks that own the experts and gathered on every rank (moe_layer_ep.c). */
moe_status moe_layer_ep_experts(const moe_layer *L, const float *x, int n, const moe_assign *a, const float *logits,
                                float *out, moe_arena *scratch);
/* Whether this rank runs expert e of L (always, without expert parallelism). */
int moe_layer_owns(const moe_layer *L, int e);
moe_status moe_layer_after(const moe_layer *L, const float *resid, int n, moe_arena *scratch);
#endif
