/* moe_layer.c - one MoE block for every router (see moe_layer.h): route, transform, group, report,
 * tell the store, run the experts (experts.c), add the shared experts.
 *
 * Every router's decision takes the same path, so what one router gets (parallel expert products,
 * waves for bounded stores, prefetch, the shared expert's gate) every router gets. A select router's
 * decision is token-major with k experts per token, grouped by a stable counting sort: each expert's
 * rows are its tokens in ascending order, as the executor's combine order requires. */
#include "moe/moe_layer.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "moe/experts.h"
#include "moe/ffn.h"
#include "moe/predictor.h"
#include <math.h>
#include <string.h>

/* Guess the next MoE layer's experts from x (moe/predictor.h) and tell the store what it will likely
 * need. residual == 0: x is this layer's FFN input (early guess); otherwise the residual stream after
 * this layer (late guess). */
static moe_status predict_next(const moe_layer *L, const float *x, int n, int residual, moe_arena *scratch) {
    const moe_layer *N = L->next;
    if (!N->router.ops->select) return MOE_OK;   /* routers of the general form depend on the batch: no guess */
    int E = N->router.p.n_experts, k = N->router.p.top_k, d = L->d_model, g = residual ? MOE_GUESS_LATE : MOE_GUESS_EARLY;
    size_t nE = (size_t)n * E, nk = (size_t)n * k;
    moe_arena_mark mark = moe_arena_push(scratch);
    float *logits = moe_arena_alloc(scratch, nE * 4), *scores = moe_arena_alloc(scratch, nE * 4);
    float *weight = moe_arena_alloc(scratch, nk * 4), *xs = moe_arena_alloc(scratch, (size_t)n * d * 4);
    int *expert = moe_arena_alloc(scratch, nk * sizeof(int)), *pick = moe_arena_alloc(scratch, (size_t)E * sizeof(int));
    unsigned char *seen = moe_arena_alloc(scratch, (size_t)E);
    moe_status st = MOE_OK;
    if (!logits || !scores || !weight || !expert || !pick || !seen || !xs) {
        st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for a prediction", N->layer);
    } else {
        memset(seen, 0, (size_t)E);
        moe_predictor_input(g, x, n, d, L->norm, N->norm, L->norm_eps, xs);
        if (N->pred_w[g]) {
            moe_predictor_logits(xs, n, d, N->pred_w[g], N->pred_b[g], E, logits);
            N->router.ops->select(&N->router, logits, n, scores, expert, weight);
        } else {
            moe_router_route(&N->router, xs, n, logits, scores, expert, weight);
        }
        int np = 0; /* distinct experts, most preferred first (token order, then rank) */
        for (int j = 0; j < k; j++)
            for (int t = 0; t < n; t++) {
                int e = expert[(size_t)t * k + j];
                if (!seen[e] && moe_layer_owns(N, e)) { seen[e] = 1; pick[np++] = e; }
            }
        moe_store_predict(N->store, N->layer, pick, np);
    }
    moe_arena_pop(scratch, mark);
    return st;
}

moe_status moe_layer_after(const moe_layer *L, const float *resid, int n, moe_arena *scratch) {
    if (!L->store->predict_next || !L->next || !L->norm || !L->next->norm) return MOE_OK;
    return predict_next(L, resid, n, 1, scratch);
}

/* The hook's fixed-width form: k assignments per token. A decision that is exactly that (select
 * routers) is passed as is; any other is padded to the largest count per token with expert -1 and
 * weight 0, each token's experts in the decision's order. Soft MoE reports every expert with its
 * combine mass. */
static moe_status report(const moe_layer *L, const moe_assign *a, int n, const int *pos, moe_route_hook hook,
                         void *user, moe_arena *scratch) {
    int E = a->n_experts, k = n > 0 ? a->n / n : 0;
    int uniform = !a->dispatch && k > 0 && k * n == a->n;
    for (int i = 0; uniform && i < a->n; i++) uniform = a->tok[i] == i / k;
    if (uniform) {
        moe_routing r = {L->layer, n, E, k, pos, a->exp, a->w, a->probs};
        hook(user, &r);
        return MOE_OK;
    }
    moe_arena_mark mark = moe_arena_push(scratch);
    int *cnt = moe_arena_alloc(scratch, sizeof(int) * (size_t)n), kmax = a->dispatch ? E : 0;
    if (!cnt) return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", L->layer);
    memset(cnt, 0, sizeof(int) * (size_t)n);
    for (int i = 0; i < a->n; i++)
        if (++cnt[a->tok[i]] > kmax) kmax = cnt[a->tok[i]];
    if (kmax == 0) kmax = 1;
    int *ex = moe_arena_alloc(scratch, sizeof(int) * (size_t)n * kmax);
    float *w = moe_arena_alloc(scratch, sizeof(float) * (size_t)n * kmax);
    if (!ex || !w) { moe_arena_pop(scratch, mark); return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", L->layer); }
    for (size_t i = 0; i < (size_t)n * kmax; i++) { ex[i] = -1; w[i] = 0; }
    if (a->dispatch) {
        for (int t = 0; t < n; t++)
            for (int e = 0; e < E; e++) { ex[(size_t)t * E + e] = e; w[(size_t)t * E + e] = a->probs[(size_t)t * E + e]; }
    } else {
        memset(cnt, 0, sizeof(int) * (size_t)n);
        for (int i = 0; i < a->n; i++) {
            size_t at = (size_t)a->tok[i] * kmax + (size_t)cnt[a->tok[i]]++;
            ex[at] = a->exp[i];
            w[at] = a->w[i];
        }
    }
    moe_routing r = {L->layer, n, E, kmax, pos, ex, w, a->probs};
    hook(user, &r);
    moe_arena_pop(scratch, mark);
    return MOE_OK;
}

/* out += the shared experts' output, times sigmoid(x . w_gate) where the layer has that gate
 * (Qwen2-MoE). The one place shared experts are added, whatever the router. */
static moe_status add_shared(const moe_layer *L, const float *x, int n, float *out, moe_arena *scratch) {
    if (!L->has_shared) return MOE_OK;
    int d = L->d_model, sff = moe_ffn_width(&L->shared);
    moe_arena_mark mark = moe_arena_push(scratch);
    float *ys = moe_arena_alloc(scratch, (size_t)n * d * 4), *g = moe_arena_alloc(scratch, (size_t)n * 4);
    float *hg = moe_arena_alloc(scratch, (size_t)n * sff * 4), *hu = moe_arena_alloc(scratch, (size_t)n * sff * 4);
    if (!ys || !g || !hg || !hu) {
        moe_arena_pop(scratch, mark);
        return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for the shared experts", L->layer);
    }
    moe_swiglu_forward(&L->shared, x, n, ys, hg, hu);
    if (L->has_shared_gate) {
        moe_matmul(g, x, n, L->shared_gate.dtype, L->shared_gate.data, 1, d);
        for (int t = 0; t < n; t++) {
            float s = 1.0f / (1.0f + expf(-g[t]));
            float *y = ys + (size_t)t * d;
            for (int j = 0; j < d; j++) y[j] *= s;
        }
    }
    moe_add(out, ys, (size_t)n * d);
    moe_arena_pop(scratch, mark);
    return MOE_OK;
}

/* Tell the store which experts will run and for how many rows, before any acquire; prefetch them. */
static moe_status tell_store(const moe_layer *L, const moe_assign *a, int n, const int *pos, moe_arena *scratch) {
    int E = a->n_experts, n_used = 0;
    moe_arena_mark mark = moe_arena_push(scratch);
    int *used = moe_arena_alloc(scratch, sizeof(int) * (size_t)(E > 0 ? E : 1));
    int *counts = moe_arena_alloc(scratch, sizeof(int) * (size_t)(E > 0 ? E : 1));
    if (!used || !counts) { moe_arena_pop(scratch, mark); return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", L->layer); }
    for (int e = 0; e < E; e++)   /* with expert parallelism, only this rank's experts */
        if (a->offset[e + 1] > a->offset[e] && moe_layer_owns(L, e)) {
            counts[n_used] = a->offset[e + 1] - a->offset[e];
            used[n_used++] = e;
        }
    if (pos) moe_store_route(L->store, L->layer, pos[0], n, used, counts, n_used);
    moe_store_prefetch(L->store, L->layer, used, n_used);
    moe_arena_pop(scratch, mark);
    return MOE_OK;
}

moe_status moe_layer_run(const moe_layer *L, const float *x, int n, const moe_layer_io *io, float *out,
                         moe_arena *scratch) {
    const moe_router *R = &L->router;
    int E = R->p.n_experts, nl = moe_router_n_logits(R), soft = R->ops->kind == MOE_ROUTE_SOFT;
    if (n <= 0) return MOE_OK;
    if (R->ops->needs_token_ids && !io->tokens)
        return moe_fail(MOE_EINTERNAL, "MoE layer %d: router %s needs the input token ids", L->layer, R->ops->name);
    moe_arena_mark mark = moe_arena_push(scratch);
    moe_status st = MOE_OK;
    moe_assign a;
    float *logits = moe_arena_alloc(scratch, (size_t)n * (nl > 0 ? nl : 1) * 4);
    if (!logits) st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for %d tokens", L->layer, n);
    if (st == MOE_OK) st = moe_assign_init_arena(&a, n, E, nl > 0 ? nl : 1, soft, scratch);
    if (st == MOE_OK) {
        if (nl > 0) moe_router_logits(R, x, n, nl, logits);
        moe_route_in in = {nl > 0 ? logits : NULL, n, n, io->tokens, io->pos, L->layer, 0, NULL};
        st = moe_router_assign(R, &in, &a);
        if (st == MOE_OK && io->transform) st = io->transform(io->transform_user, L, &in, &a);
    }
    if (st == MOE_OK) st = moe_assign_group(&a, "MoE layer");
    if (st == MOE_OK && io->counts) {   /* what runs: assignments, or every expert's slots for Soft MoE */
        __atomic_fetch_add(&io->counts[0], (uint64_t)n, __ATOMIC_RELAXED);
        __atomic_fetch_add(&io->counts[1], (uint64_t)(a.dispatch ? (size_t)n * E : (size_t)a.n), __ATOMIC_RELAXED);
    }
    if (st == MOE_OK && io->hook) st = report(L, &a, n, io->pos, io->hook, io->hook_user, scratch);
    if (st == MOE_OK) st = tell_store(L, &a, n, io->pos, scratch);
    if (st == MOE_OK && L->store->predict_next && L->next && L->norm && L->next->norm) st = predict_next(L, x, n, 0, scratch);
    if (st == MOE_OK && L->ep) {
        st = moe_layer_ep_experts(L, x, n, &a, logits, out, scratch);
    } else if (st == MOE_OK) {
        moe_experts_call c = {x, n, &a, logits, 0, E, NULL, NULL, NULL};
        st = moe_experts_forward(L, &c, out, scratch);
    }
    if (st == MOE_OK) st = add_shared(L, x, n, out, scratch);
    moe_arena_pop(scratch, mark);
    return st;
}

moe_status moe_layer_forward_tokens(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                    float *out, moe_route_hook hook, void *hook_user, moe_arena *scratch) {
    moe_layer_io io = {pos, tokens, hook, hook_user, NULL, NULL, NULL};
    return moe_layer_run(L, x, n, &io, out, scratch);
}

moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user, moe_arena *scratch) {
    return moe_layer_forward_tokens(L, x, n, pos, NULL, out, hook, hook_user, scratch);
}
