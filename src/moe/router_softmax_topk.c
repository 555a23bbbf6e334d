/* router_softmax_topk.c - GShard / Mixtral / Qwen / OLMoE routing.
 *   p = softmax(logits);  chosen = top-k of p;  w_j = p_j, or p_j / sum_chosen p if renormalised. */
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

static void select_softmax(const moe_router *r, const float *logits, int n, float *scores, int *expert, float *weight) {
    int E = r->p.n_experts, k = r->p.top_k;
    for (int t = 0; t < n; t++) {
        float *p = scores + (size_t)t * E;
        int *ex = expert + (size_t)t * k;
        float *w = weight + (size_t)t * k;
        softmax_row(logits + (size_t)t * E, p, E);
        moe_topk(p, E, k, ex);
        float s = 0;
        for (int j = 0; j < k; j++) s += (w[j] = p[ex[j]]);
        if (r->p.norm_topk_prob)
            for (int j = 0; j < k; j++) w[j] /= s;
        if (r->p.routed_scaling != 1.0)
            for (int j = 0; j < k; j++) w[j] *= (float)r->p.routed_scaling;
    }
}

const moe_router_ops moe_router_softmax_topk = {"softmax_topk", "softmax over experts, top-k, optional renormalisation",
                                                select_softmax};
