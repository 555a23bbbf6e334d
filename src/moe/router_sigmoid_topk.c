/* router_sigmoid_topk.c - Llama 4's router (transformers' Llama4Router): the k largest logits choose the
 * experts, and each chosen expert's weight is sigmoid(its logit), not normalised over the chosen:
 *   e_1..e_k = top-k of l;   w_j = sigmoid(l_{e_j}).
 * Scores for the hook and statistics: sigmoid of every logit (the per-expert probability of being
 * useful; they do not sum to 1). Llama 4 applies the weight to the expert's input rather than its output
 * (moe_layer.weight_on_input, set by the family), which this router does not need to know.
 * Inference only: no backward. */
#include "moe/router.h"
#include <math.h>

static void select_sigmoid_topk(const moe_router *r, const float *logits, int n, float *scores, int *expert,
                                float *weight) {
    int E = r->p.n_experts, k = r->p.top_k;
    for (int t = 0; t < n; t++) {
        const float *l = logits + (size_t)t * E;
        float *s = scores + (size_t)t * E;
        for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-l[e]));
        moe_topk(l, E, k, expert + (size_t)t * k);
        for (int j = 0; j < k; j++) weight[(size_t)t * k + j] = s[expert[(size_t)t * k + j]];
    }
}

const moe_router_ops moe_router_sigmoid_topk = {
    .name = "sigmoid_topk", .summary = "top-k logits, each weighted by its sigmoid (Llama 4)",
    .select = select_sigmoid_topk, .kind = MOE_ROUTE_SPARSE};
