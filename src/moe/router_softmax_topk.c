/* router_softmax_topk.c - GShard / Mixtral / Qwen / OLMoE / Granite / ERNIE routing.
 *   p = softmax(logits);  chosen = top-k of p (of p + score bias when the layer has one: ERNIE);
 *   w_j = p_j, or p_j / max(sum_chosen p, norm_min) if renormalised.
 * Backward (training): with S = sum of the chosen p and s the routed scaling,
 *   renormalised: dp_j = s/S (dw_j - sum_i dw_i p_i/S) for chosen j;  otherwise dp_j = s dw_j;
 *   then dlogits = p * (dp - <dp, p>) (softmax backward), dp also receiving the balancing losses'
 *   gradient on p. The argmax-like choice itself has no gradient: the router learns through the
 *   weights of the experts it chose, which is how GShard and Mixtral train. */
#include "moe/router.h"
#include <math.h>

static void softmax_row(const float *x, float *y, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (int i = 0; i < n; i++) s += (y[i] = expf(x[i] - m));
    float inv = 1.0f / s; /* torch multiplies by the reciprocal */
    for (int i = 0; i < n; i++) y[i] *= inv;
}

/* moe_topk of p[i] + b[i] (the sums rounded to float, as torch adds them), without a buffer. */
static void topk_biased(const float *p, const float *b, int n, int k, int *idx) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        float x = p[i] + b[i];
        if (m == k && !(x > p[idx[k - 1]] + b[idx[k - 1]])) continue;
        int j = m < k ? m++ : k - 1;
        while (j > 0 && x > p[idx[j - 1]] + b[idx[j - 1]]) { idx[j] = idx[j - 1]; j--; }
        idx[j] = i;
    }
}

static void select_softmax(const moe_router *r, const float *logits, int n, float *scores, int *expert, float *weight) {
    int E = r->p.n_experts, k = r->p.top_k;
    for (int t = 0; t < n; t++) {
        float *p = scores + (size_t)t * E;
        int *ex = expert + (size_t)t * k;
        float *w = weight + (size_t)t * k;
        softmax_row(logits + (size_t)t * E, p, E);
        if (r->score_bias) topk_biased(p, r->score_bias, E, k, ex);
        else moe_topk(p, E, k, ex);
        float s = 0;
        for (int j = 0; j < k; j++) s += (w[j] = p[ex[j]]);
        if (s < (float)r->p.norm_min) s = (float)r->p.norm_min;
        if (r->p.norm_topk_prob)
            for (int j = 0; j < k; j++) w[j] /= s;
        if (r->p.routed_scaling != 1.0)
            for (int j = 0; j < k; j++) w[j] *= (float)r->p.routed_scaling;
    }
}

static void backward_softmax(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                             const float *d_probs, float *d_logits) {
    int E = r->p.n_experts, k = r->p.top_k;
    float sc = (float)r->p.routed_scaling;
    float *dp = a->ftmp;
    for (int t = 0; t < in->n; t++) {
        const float *p = a->probs + (size_t)t * E;
        const int *ex = a->exp + (size_t)t * k;
        const float *dw = d_w + (size_t)t * k;
        for (int e = 0; e < E; e++) dp[e] = d_probs ? d_probs[(size_t)t * E + e] : 0.0f;
        if (r->p.norm_topk_prob) {
            double S = 0, dot = 0;
            for (int j = 0; j < k; j++) S += p[ex[j]];
            for (int j = 0; j < k; j++) dot += (double)dw[j] * p[ex[j]] / S;
            for (int j = 0; j < k; j++) dp[ex[j]] += (float)(sc / S * (dw[j] - dot));
        } else {
            for (int j = 0; j < k; j++) dp[ex[j]] += sc * dw[j];
        }
        moe_softmax_row_bwd(p, dp, d_logits + (size_t)t * E, E);
    }
}

const moe_router_ops moe_router_softmax_topk = {
    .name = "softmax_topk", .summary = "softmax over experts, top-k, optional renormalisation",
    .select = select_softmax, .backward = backward_softmax, .kind = MOE_ROUTE_SPARSE, .trainable = 1,
    .hf_layouts = "qwen3_moe mixtral"};
