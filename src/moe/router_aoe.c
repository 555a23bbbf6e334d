/* router_aoe.c - Autonomy-of-Experts (Lv et al. 2025, "Autonomy-of-Experts Models"): there is no
 * router. Each expert's gate projection is factored, W_gate,e = B_e A_e (A_e: rank x d), and every
 * expert computes z_e = A_e x for every token; experts are ranked by the norm of that activation:
 *   n_e = ||z_e||,  p = softmax(n),  chosen = top-k of p,  w_j = p_j (renormalised if norm_topk_prob).
 * Only the chosen experts go on: their gate pre-activation is B_e z_e, reusing z_e. The stacked A_e
 * are stored as the gate matrix ([E*rank][d]; its outputs are this router's "logits" z) and B_e as
 * experts.e.gate_proj ([d_expert][rank]).
 * Backward: the top-k weight gradient, the softmax backward to dn, then dz_e = dn_e z_e / ||z_e||
 * (the MoE block adds B_e^T dg from the chosen experts' own gate products). */
#include "moe/router.h"
#include "core/error.h"
#include <math.h>
#include <string.h>

static int n_logits(const moe_router_params *p) { return p->n_experts * (p->rank > 0 ? p->rank : 1); }

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts, k = r->p.top_k, R = n_logits(&r->p) / E;
    float *norms = a->save;   /* [n][E], kept for the backward */
    int *ex = a->itmp;
    a->n = 0;
    for (int t = 0; t < n; t++) {
        const float *z = in->logits + (size_t)t * E * R;
        float *nt = norms + (size_t)t * E, *p = a->probs + (size_t)t * E;
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int i = 0; i < R; i++) s += (double)z[e * R + i] * z[e * R + i];
            nt[e] = (float)sqrt(s);
        }
        moe_softmax_row(nt, p, E);
        moe_topk(p, E, k, ex);
        double S = 0;
        for (int j = 0; j < k; j++) S += p[ex[j]];
        for (int j = 0; j < k; j++) {
            a->tok[a->n] = t;
            a->exp[a->n] = ex[j];
            a->w[a->n++] = (float)((r->p.norm_topk_prob ? p[ex[j]] / S : p[ex[j]]) * r->p.routed_scaling);
        }
    }
    return MOE_OK;
}

static void backward(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                     const float *d_probs, float *d_logits) {
    int n = in->n, E = r->p.n_experts, k = r->p.top_k, R = n_logits(&r->p) / E;
    float *dp = a->ftmp, *dn = a->ftmp + E;
    for (int t = 0; t < n; t++) {
        const float *p = a->probs + (size_t)t * E, *nt = a->save + (size_t)t * E;
        const float *z = in->logits + (size_t)t * E * R;
        float *dz = d_logits + (size_t)t * E * R;
        for (int e = 0; e < E; e++) dp[e] = d_probs ? d_probs[(size_t)t * E + e] : 0.0f;
        moe_topk_weights_bwd(p, a->exp + (size_t)t * k, d_w + (size_t)t * k, k, r->p.norm_topk_prob,
                             r->p.routed_scaling, dp);
        moe_softmax_row_bwd(p, dp, dn, E);
        for (int e = 0; e < E; e++) {
            float c = nt[e] > 0 ? dn[e] / nt[e] : 0.0f;
            for (int i = 0; i < R; i++) dz[e * R + i] = c * z[e * R + i];
        }
    }
}

const moe_router_ops moe_router_aoe = {
    .name = "aoe", .summary = "Autonomy-of-Experts: experts rank themselves by ||A_e x||, no router",
    .route = route, .backward = backward, .kind = MOE_ROUTE_SPARSE, .n_logits = n_logits,
    .expert_gate_factored = 1, .trainable = 1};
