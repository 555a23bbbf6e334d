/* moe_layer.c - routing, grouping by expert, expert products and combine (see moe_layer.h). */
#include "moe/moe_layer.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "moe/ffn.h"
#include <math.h>
#include <string.h>

/* Group the n*k assignments by expert: a counting sort keeps tokens ascending within each expert. */
static void group_by_expert(const int *expert, const float *weight, int n, int k, int E, int *offset, int *tok,
                            float *w) {
    memset(offset, 0, sizeof(int) * (size_t)(E + 1));
    for (int a = 0; a < n * k; a++) offset[expert[a] + 1]++;
    for (int e = 0; e < E; e++) offset[e + 1] += offset[e];
    int *fill = offset; /* reuse: advance then restore */
    for (int a = 0; a < n * k; a++) {
        int e = expert[a], p = fill[e]++;
        tok[p] = a / k;
        w[p] = weight[a];
    }
    for (int e = E; e > 0; e--) offset[e] = offset[e - 1];
    offset[0] = 0;
}

/* Guess the experts the next MoE layer will use by routing x through its router; tell the store. */
/* Route x through the next MoE layer's router and tell the store what it will likely need.
 * residual == 0: x is this layer's normalised input rmsnorm(h) * g_L; the next router expects
 * rmsnorm(h') * g_N, and with h' ~ h rescaling each channel by g_N / g_L gives it.
 * residual != 0: x is the residual stream after this layer; normalise it with g_N. */
static moe_status predict_next(const moe_layer *L, const float *x, int n, int residual) {
    const moe_layer *N = L->next;
    int E = N->router.p.n_experts, k = N->router.p.top_k, d = L->d_model;
    size_t nE = (size_t)n * E, nk = (size_t)n * k;
    float *logits = moe_alloc(nE * 4), *scores = moe_alloc(nE * 4), *weight = moe_alloc(nk * 4);
    int *expert = moe_alloc(nk * sizeof(int)), *pick = moe_alloc((size_t)E * sizeof(int));
    unsigned char *seen = moe_calloc((size_t)E, 1);
    float *xs = L->norm && N->norm ? moe_alloc((size_t)n * d * 4) : NULL;
    moe_status st = MOE_OK;
    if (!logits || !scores || !weight || !expert || !pick || !seen || (L->norm && N->norm && !xs)) {
        st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for a prediction", N->layer);
    } else {
        if (xs && residual) {
            moe_rmsnorm(xs, x, N->norm, n, d, L->norm_eps);
            x = xs;
        } else if (xs) {
            for (int t = 0; t < n; t++)
                for (int j = 0; j < d; j++) {
                    float g = L->norm[j];
                    xs[(size_t)t * d + j] = g != 0.0f ? x[(size_t)t * d + j] * (N->norm[j] / g) : 0.0f;
                }
            x = xs;
        }
        moe_router_route(&N->router, x, n, logits, scores, expert, weight);
        int np = 0; /* distinct experts, most preferred first (token order, then rank) */
        for (int j = 0; j < k; j++)
            for (int t = 0; t < n; t++) {
                int e = expert[(size_t)t * k + j];
                if (!seen[e]) { seen[e] = 1; pick[np++] = e; }
            }
        moe_store_predict(N->store, N->layer, pick, np);
    }
    moe_free(logits); moe_free(scores); moe_free(weight); moe_free(expert); moe_free(pick); moe_free(seen);
    moe_free(xs);
    return st;
}

moe_status moe_layer_after(const moe_layer *L, const float *resid, int n) {
    if (!L->store->predict_next || !L->next || !L->norm || !L->next->norm) return MOE_OK;
    return predict_next(L, resid, n, 1);
}

moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user) {
    const moe_router_params *p = &L->router.p;
    int E = p->n_experts, k = p->top_k, d = L->d_model;
    moe_status st = MOE_OK;
    size_t nE = (size_t)n * E, nk = (size_t)n * k;
    float *logits = moe_alloc(nE * 4), *scores = moe_alloc(nE * 4), *weight = moe_alloc(nk * 4), *gw = moe_alloc(nk * 4);
    int *expert = moe_alloc(nk * sizeof(int)), *tok = moe_alloc(nk * sizeof(int));
    int *offset = moe_alloc(((size_t)E + 1) * sizeof(int)), *used = moe_alloc((size_t)E * sizeof(int));
    int *counts = moe_alloc((size_t)E * sizeof(int));
    /* scratch for the largest FFN that runs: at most n tokens per expert */
    int ff = L->d_expert;
    if (L->has_shared && moe_ffn_width(&L->shared) > ff) ff = moe_ffn_width(&L->shared);
    float *xe = moe_alloc((size_t)n * d * 4), *ye = moe_alloc((size_t)n * d * 4);
    float *hg = moe_alloc((size_t)n * ff * 4), *hu = moe_alloc((size_t)n * ff * 4);
    if (!logits || !scores || !weight || !gw || !expert || !tok || !offset || !used || !counts || !xe || !ye || !hg || !hu) {
        st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for %d tokens", L->layer, n);
        goto done2;
    }

    moe_router_route(&L->router, x, n, logits, scores, expert, weight);
    if (hook) {
        moe_routing r = {L->layer, n, E, k, pos, expert, weight, scores};
        hook(hook_user, &r);
    }
    group_by_expert(expert, weight, n, k, E, offset, tok, gw);

    int n_used = 0;
    for (int e = 0; e < E; e++)
        if (offset[e + 1] > offset[e]) used[n_used++] = e;
    for (int u = 0; u < n_used; u++) counts[u] = offset[used[u] + 1] - offset[used[u]];
    moe_store_route(L->store, L->layer, pos[0], n, used, counts, n_used);
    moe_store_prefetch(L->store, L->layer, used, n_used);
    if (L->store->predict_next && L->next && (st = predict_next(L, x, n, 0)) != MOE_OK) goto done2;

    memset(out, 0, (size_t)n * d * 4);
    for (int u = 0; u < n_used; u++) {
        int e = used[u], b = offset[e], cnt = offset[e + 1] - b;
        moe_ffn_weights w;
        if ((st = moe_store_acquire(L->store, L->layer, e, &w)) != MOE_OK) goto done2;
        for (int i = 0; i < cnt; i++) memcpy(xe + (size_t)i * d, x + (size_t)tok[b + i] * d, (size_t)d * 4);
        moe_swiglu_forward(&w, xe, cnt, ye, hg, hu);
        moe_store_release(L->store, L->layer, e);
        for (int i = 0; i < cnt; i++) {
            float *o = out + (size_t)tok[b + i] * d;
            const float *y = ye + (size_t)i * d;
            float wt = gw[b + i];
            for (int j = 0; j < d; j++) o[j] += y[j] * wt;
        }
    }

    if (L->has_shared) {
        moe_swiglu_forward(&L->shared, x, n, ye, hg, hu);
        if (L->has_shared_gate) {
            moe_matmul(logits, x, n, L->shared_gate.dtype, L->shared_gate.data, 1, d);
            for (int t = 0; t < n; t++) {
                float g = 1.0f / (1.0f + expf(-logits[t]));
                float *y = ye + (size_t)t * d;
                for (int j = 0; j < d; j++) y[j] *= g;
            }
        }
        for (size_t i = 0; i < (size_t)n * d; i++) out[i] += ye[i];
    }
done2:
    moe_free(xe); moe_free(ye); moe_free(hg); moe_free(hu);
    moe_free(logits); moe_free(scores); moe_free(weight); moe_free(gw);
    moe_free(expert); moe_free(tok); moe_free(offset); moe_free(used); moe_free(counts);
    return st;
}
