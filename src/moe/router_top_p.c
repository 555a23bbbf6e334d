/* router_top_p.c - dynamic top-p routing (Huang et al. 2024, "Harder Tasks Need More Experts: Dynamic
 * Routing in MoE Models"): p = softmax(logits); experts are taken in decreasing p until their
 * cumulative probability reaches top_p (at least one), so confident tokens use fewer experts;
 * w_j = p_j (renormalised over the chosen if norm_topk_prob), times routed_scaling.
 * Backward: the top-k weight gradient over each token's chosen set, then the softmax backward. The
 * paper's entropy ("dynamic") loss that pushes the distribution to be peaked is not implemented;
 * the number of experts per token is reported instead. */
#include "moe/router.h"
#include "core/error.h"
#include <string.h>

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts;
    double target = r->p.top_p > 0 ? r->p.top_p : 0.5;
    int *order = a->itmp;
    a->n = 0;
    for (int t = 0; t < n; t++) {
        float *p = a->probs + (size_t)t * E;
        moe_softmax_row(in->logits + (size_t)t * E, p, E);
        moe_topk(p, E, E, order);
        double cum = 0, S = 0;
        int k = 0;
        while (k < E && (k == 0 || cum < target)) cum += p[order[k++]];
        for (int j = 0; j < k; j++) S += p[order[j]];
        for (int j = 0; j < k; j++) {
            a->tok[a->n] = t;
            a->exp[a->n] = order[j];
            a->w[a->n++] = (float)((r->p.norm_topk_prob ? p[order[j]] / S : p[order[j]]) * r->p.routed_scaling);
        }
    }
    return MOE_OK;
}

static void backward(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                     const float *d_probs, float *d_logits) {
    int n = in->n, E = r->p.n_experts;
    float *dp = a->ftmp;
    int i = 0;
    for (int t = 0; t < n; t++) {
        const float *p = a->probs + (size_t)t * E;
        for (int e = 0; e < E; e++) dp[e] = d_probs ? d_probs[(size_t)t * E + e] : 0.0f;
        int i0 = i;
        while (i < a->n && a->tok[i] == t) i++;
        moe_topk_weights_bwd(p, a->exp + i0, d_w + i0, i - i0, r->p.norm_topk_prob, r->p.routed_scaling, dp);
        moe_softmax_row_bwd(p, dp, d_logits + (size_t)t * E, E);
    }
}

const moe_router_ops moe_router_top_p = {
    .name = "top_p", .summary = "experts in decreasing probability until their sum reaches p",
    .route = route, .backward = backward, .own_count = 1, .kind = MOE_ROUTE_SPARSE, .trainable = 1};
