/* router_expert_choice.c - Expert Choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert
 * Choice Routing"). Experts pick tokens instead of tokens picking experts:
 *   S = softmax over experts of each token's logits;  expert e takes the C tokens with the largest
 *   S[t][e], C = ceil(capacity_factor * tokens * k / experts);  weight w = S[t][e].
 * Every expert is exactly full (perfect balance, no balancing loss needed); a token may get any
 * number of experts, including none (it then skips the layer through the residual).
 * Backward: dS[t][e] = dw for chosen pairs, then the softmax backward per token.
 * The choice looks at the whole batch, future tokens of a sequence included; at inference the batch
 * is the prefill chunk, and one token at a time gives each token min(C, 1) = 1 slot per expert. */
#include "moe/router.h"
#include "core/error.h"
#include <math.h>
#include <string.h>

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts, k = r->p.top_k;
    double cf = r->p.capacity_factor > 0 ? r->p.capacity_factor : 1.0;
    int C = (int)ceil(cf * n * k / E);
    if (C > n) C = n;
    float *col = a->ftmp;                    /* [n] one expert's scores */
    int *idx = a->itmp;                      /* [C] */
    for (int t = 0; t < n; t++) moe_softmax_row(in->logits + (size_t)t * E, a->probs + (size_t)t * E, E);
    a->n = 0;
    for (int e = 0; e < E; e++) {
        for (int t = 0; t < n; t++) col[t] = a->probs[(size_t)t * E + e];
        moe_topk(col, n, C, idx);
        for (int j = 0; j < C; j++) {
            a->tok[a->n] = idx[j];
            a->exp[a->n] = e;
            a->w[a->n++] = col[idx[j]] * (float)r->p.routed_scaling;
        }
    }
    moe_assign_sort_by_token(a);
    return MOE_OK;
}

const moe_router_ops moe_router_expert_choice = {
    .name = "expert_choice", .summary = "each expert takes its top-C tokens",
    .route = route, .backward = moe_router_softmax_weight_bwd, .kind = MOE_ROUTE_SPARSE, .trainable = 1};
