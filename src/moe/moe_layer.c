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

static moe_status forward_route(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                float *out, moe_route_hook hook, void *hook_user);

moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user) {
    return moe_layer_forward_tokens(L, x, n, pos, NULL, out, hook, hook_user);
}

moe_status moe_layer_forward_tokens(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                    float *out, moe_route_hook hook, void *hook_user) {
    if (L->router.ops->route) return forward_route(L, x, n, pos, tokens, out, hook, hook_user);
    const moe_router_params *p = &L->router.p;
    int E = p->n_experts, k = p->top_k, d = L->d_model;
    moe_status st = MOE_OK;
    size_t nE = (size_t)n * E, nk = (size_t)n * k;
    float *logits = moe_alloc(nE * 4), *scores = moe_alloc(nE * 4), *weight = moe_alloc(nk * 4), *gw = moe_alloc(nk * 4);
    int *expert = moe_alloc(nk * sizeof(int)), *tok = moe_alloc(nk * sizeof(int));
    int *offset = moe_alloc(((size_t)E + 1) * sizeof(int)), *used = moe_alloc((size_t)E * sizeof(int));
    /* scratch for the largest FFN that runs: at most n tokens per expert */
    int ff = L->d_expert;
    if (L->has_shared && moe_ffn_width(&L->shared) > ff) ff = moe_ffn_width(&L->shared);
    float *xe = moe_alloc((size_t)n * d * 4), *ye = moe_alloc((size_t)n * d * 4);
    float *hg = moe_alloc((size_t)n * ff * 4), *hu = moe_alloc((size_t)n * ff * 4);
    if (!logits || !scores || !weight || !gw || !expert || !tok || !offset || !used || !xe || !ye || !hg || !hu) {
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
    moe_store_prefetch(L->store, L->layer, used, n_used);

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
    moe_free(expert); moe_free(tok); moe_free(offset); moe_free(used);
    return st;
}

/* ---- routers of the general form ------------------------------------------------------------- */

/* Report a variable number of experts per token through the fixed-width hook: padded to the largest
 * count, expert -1 and weight 0 in the padding. Soft MoE reports every expert with its combine mass. */
static moe_status report(const moe_layer *L, const moe_assign *a, int n, const int *pos, moe_route_hook hook,
                         void *user) {
    int E = L->router.p.n_experts, kmax = 0;
    int soft = L->router.ops->kind == MOE_ROUTE_SOFT;
    if (soft) kmax = E;
    for (int i = 0, c = 0; i < a->n; i++) {
        c = i > 0 && a->tok[i] == a->tok[i - 1] ? c + 1 : 1;
        kmax = c > kmax ? c : kmax;
    }
    if (kmax == 0) kmax = 1;
    int *ex = moe_alloc(sizeof(int) * (size_t)n * kmax);
    float *w = moe_alloc(sizeof(float) * (size_t)n * kmax);
    if (!ex || !w) { moe_free(ex); moe_free(w); return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", L->layer); }
    for (size_t i = 0; i < (size_t)n * kmax; i++) { ex[i] = -1; w[i] = 0; }
    if (soft) {
        for (int t = 0; t < n; t++)
            for (int e = 0; e < E; e++) { ex[(size_t)t * E + e] = e; w[(size_t)t * E + e] = a->probs[(size_t)t * E + e]; }
    } else {
        for (int i = 0, c = 0; i < a->n; i++) {
            c = i > 0 && a->tok[i] == a->tok[i - 1] ? c + 1 : 0;
            ex[(size_t)a->tok[i] * kmax + c] = a->exp[i];
            w[(size_t)a->tok[i] * kmax + c] = a->w[i];
        }
    }
    moe_routing r = {L->layer, n, E, kmax, pos, ex, w, a->probs};
    hook(user, &r);
    moe_free(ex);
    moe_free(w);
    return MOE_OK;
}

/* One expert over rows xe[cnt][d]; Autonomy-of-Experts starts its gate from ze[cnt][rank]. */
static void expert_rows(const moe_ffn_weights *w, const float *xe, const float *ze, int rank, int cnt, int d,
                        float *ye, float *hg, float *hu) {
    if (!ze) { moe_swiglu_forward(w, xe, cnt, ye, hg, hu); return; }
    int ff = (int)w->up.shape[0];
    moe_matmul(hg, ze, cnt, w->gate.dtype, w->gate.data, ff, rank);
    moe_matmul(hu, xe, cnt, w->up.dtype, w->up.data, ff, d);
    moe_silu_mul(hg, hu, (size_t)cnt * ff);
    moe_matmul(ye, hg, cnt, w->down.dtype, w->down.data, d, ff);
}

static moe_status forward_route(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                float *out, moe_route_hook hook, void *hook_user) {
    const moe_router *R = &L->router;
    int E = R->p.n_experts, d = L->d_model, nl = moe_router_n_logits(R);
    int soft = R->ops->kind == MOE_ROUTE_SOFT, aoe = !strcmp(R->ops->name, "aoe");
    int rank = aoe ? nl / E : 0, S = soft ? nl / E : 0;
    moe_status st = MOE_OK;
    moe_assign a;
    float *logits = NULL, *xe = NULL, *ye = NULL, *hg = NULL, *hu = NULL, *ze = NULL, *slots = NULL, *sy = NULL;
    int *offset = NULL, *row = NULL;
    if ((st = moe_assign_init(&a, n, E, nl > 0 ? nl : 1)) != MOE_OK) return st;
    int ff = L->d_expert;
    if (L->has_shared && moe_ffn_width(&L->shared) > ff) ff = moe_ffn_width(&L->shared);
    size_t rows = soft ? (size_t)nl : (size_t)n;   /* the most rows one expert gets: n tokens, or all slots */
    size_t big = rows > (size_t)n ? rows : (size_t)n;
    logits = moe_alloc((size_t)n * (nl > 0 ? nl : 1) * 4);
    xe = moe_alloc(big * d * 4); ye = moe_alloc(big * d * 4);
    hg = moe_alloc(big * ff * 4); hu = moe_alloc(big * ff * 4);
    ze = aoe ? moe_alloc((size_t)n * rank * 4) : NULL;
    offset = moe_alloc(((size_t)E + 1) * sizeof(int));
    row = moe_alloc(((size_t)n * E + 1) * sizeof(int));
    if (!logits || !xe || !ye || !hg || !hu || (aoe && !ze) || !offset || !row) {
        st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for %d tokens", L->layer, n);
        goto done;
    }
    if (nl > 0) moe_matmul(logits, x, n, R->gate.dtype, R->gate.data, nl, d);
    moe_route_in in = {nl > 0 ? logits : NULL, n, n, tokens, pos, L->layer, 0, NULL};
    if ((st = moe_router_assign(R, &in, &a)) != MOE_OK) goto done;
    if (hook && (st = report(L, &a, n, pos, hook, hook_user)) != MOE_OK) goto done;
    memset(out, 0, (size_t)n * d * 4);
    if (soft) {
        /* slot j's input: sum_t D[t][j] x_t; output y_t = sum_j C[t][j] f(slot j) */
        slots = moe_calloc((size_t)nl * d, 4);
        sy = moe_alloc((size_t)nl * d * 4);
        if (!slots || !sy) { st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", L->layer); goto done; }
        for (int t = 0; t < n; t++)
            for (int j = 0; j < nl; j++) {
                float D = a.dispatch[(size_t)t * nl + j];
                const float *xr = x + (size_t)t * d;
                float *sr = slots + (size_t)j * d;
                for (int i = 0; i < d; i++) sr[i] += D * xr[i];
            }
        for (int e = 0; e < E; e++) {
            moe_ffn_weights w;
            if ((st = moe_store_acquire(L->store, L->layer, e, &w)) != MOE_OK) goto done;
            moe_swiglu_forward(&w, slots + (size_t)e * S * d, S, sy + (size_t)e * S * d, hg, hu);
            moe_store_release(L->store, L->layer, e);
        }
        for (int t = 0; t < n; t++)
            for (int j = 0; j < nl; j++) {
                float C = a.combine[(size_t)t * nl + j];
                const float *yr = sy + (size_t)j * d;
                float *o = out + (size_t)t * d;
                for (int i = 0; i < d; i++) o[i] += C * yr[i];
            }
    } else {
        /* group the assignments by expert (stable: token order within an expert) */
        memset(offset, 0, sizeof(int) * (size_t)(E + 1));
        for (int i = 0; i < a.n; i++) offset[a.exp[i] + 1]++;
        for (int e = 0; e < E; e++) offset[e + 1] += offset[e];
        int *fill = a.itmp;
        memcpy(fill, offset, sizeof(int) * (size_t)E);
        for (int i = 0; i < a.n; i++) row[fill[a.exp[i]]++] = i;
        for (int e = 0; e < E; e++) {
            int b = offset[e], cnt = offset[e + 1] - b;
            if (cnt == 0) continue;
            moe_ffn_weights w;
            if ((st = moe_store_acquire(L->store, L->layer, e, &w)) != MOE_OK) goto done;
            for (int i = 0; i < cnt; i++) {
                int t = a.tok[row[b + i]];
                memcpy(xe + (size_t)i * d, x + (size_t)t * d, (size_t)d * 4);
                if (aoe) memcpy(ze + (size_t)i * rank, logits + (size_t)t * nl + (size_t)e * rank, (size_t)rank * 4);
            }
            expert_rows(&w, xe, aoe ? ze : NULL, rank, cnt, d, ye, hg, hu);
            moe_store_release(L->store, L->layer, e);
            for (int i = 0; i < cnt; i++) {
                int k = row[b + i];
                float *o = out + (size_t)a.tok[k] * d;
                const float *y = ye + (size_t)i * d;
                for (int j = 0; j < d; j++) o[j] += y[j] * a.w[k];
            }
        }
    }
    if (L->has_shared) {
        moe_swiglu_forward(&L->shared, x, n, ye, hg, hu);
        for (size_t i = 0; i < (size_t)n * d; i++) out[i] += ye[i];
    }
done:
    moe_assign_free(&a);
    moe_free(logits); moe_free(xe); moe_free(ye); moe_free(hg); moe_free(hu); moe_free(ze);
    moe_free(offset); moe_free(row); moe_free(slots); moe_free(sy);
    return st;
}
