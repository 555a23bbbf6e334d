/* router_sparsemax.c - sparsemax gating (Martins & Astudillo 2016, "From Softmax to Sparsemax"):
 * p = argmin_{q in simplex} ||q - z||^2 = max(z - tau, 0), tau chosen so that p sums to 1: with z
 * sorted decreasingly, k = max{k : 1 + k z_(k) > sum_{j<=k} z_(j)}, tau = (sum_{j<=k} z_(j) - 1) / k.
 * The experts with p > 0 are the token's experts (any number from 1 to E), weight w = p * scaling.
 * Backward: on the support S, dz_i = dp_i - mean_{j in S} dp_j; zero elsewhere. */
#include "moe/router.h"
#include "core/error.h"
#include <string.h>

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts;
    int *order = a->itmp;
    a->n = 0;
    for (int t = 0; t < n; t++) {
        const float *z = in->logits + (size_t)t * E;
        float *p = a->probs + (size_t)t * E;
        moe_topk(z, E, E, order);
        double cum = 0, tau = 0;
        int k = 0;
        for (int j = 0; j < E; j++) {
            cum += z[order[j]];
            if (1.0 + (j + 1) * (double)z[order[j]] > cum) { k = j + 1; tau = (cum - 1.0) / k; }
        }
        for (int e = 0; e < E; e++) p[e] = z[e] - tau > 0 ? (float)(z[e] - tau) : 0.0f;
        for (int j = 0; j < k; j++) {
            int e = order[j];
            if (p[e] <= 0) continue;
            a->tok[a->n] = t;
            a->exp[a->n] = e;
            a->w[a->n++] = p[e] * (float)r->p.routed_scaling;
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
        float *dz = d_logits + (size_t)t * E;
        for (int e = 0; e < E; e++) dp[e] = d_probs ? d_probs[(size_t)t * E + e] : 0.0f;
        for (; i < a->n && a->tok[i] == t; i++) dp[a->exp[i]] += d_w[i] * (float)r->p.routed_scaling;
        double sum = 0;
        int k = 0;
        for (int e = 0; e < E; e++)
            if (p[e] > 0) { sum += dp[e]; k++; }
        float mean = k ? (float)(sum / k) : 0.0f;
        for (int e = 0; e < E; e++) dz[e] = p[e] > 0 ? dp[e] - mean : 0.0f;
    }
}

const moe_router_ops moe_router_sparsemax = {
    .name = "sparsemax", .summary = "sparsemax gating: a sparse simplex projection picks the experts",
    .route = route, .backward = backward, .own_count = 1, .kind = MOE_ROUTE_SPARSE, .trainable = 1};
