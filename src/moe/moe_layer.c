/* moe_layer.c - routing, grouping by expert, expert products and combine (see moe_layer.h).
 *
 * All experts used by a batch run inside one OpenMP region: the work is cut into tasks of
 * (expert, block of output rows) so both threads stay busy whether the batch is one decoded token
 * touching k experts or a prefill spreading hundreds of tokens over all of them, and there is one
 * fork/join per phase instead of one per matrix. The combine runs over column ranges, so each output
 * element sums its experts in ascending expert order - the order transformers uses - whatever the
 * thread count.
 *
 * Experts from a store with a bounded number of slots (experts on disk, moe_store.max_pinned) run in
 * waves of at most that many experts, in ascending expert order; the combine accumulates wave after
 * wave, so every output element still sums its experts in the same order and the result is identical
 * to running them all at once. */
#include "moe/moe_layer.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "moe/ffn.h"
#include "moe/predictor.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define ROW_BLOCK 96   /* least output rows per task: a multiple of the 48-row kernel tiles */

/* Rows per task for matrices of `rows` rows in `n_mats` products over `avg_tokens` tokens each.
 * Decode (few tokens) uses small tasks for balance; with many tokens every kernel call packs its x
 * block again, so tasks grow until there are just enough of them (4 per thread) to balance. */
static int rows_per_task(int rows, int n_mats, double avg_tokens) {
    if (avg_tokens < 8) return ROW_BLOCK;
    int want = 4 * omp_get_max_threads(), parts = (want + n_mats - 1) / n_mats;
    int r = (rows + parts - 1) / parts;
    r = (r + 47) / 48 * 48;
    return r < ROW_BLOCK ? ROW_BLOCK : r;
}

typedef struct expert_job {
    int e, first, cnt;       /* expert id; its assignments are [first, first+cnt) in grouped order */
    moe_ffn_weights w;
    moe_gemm_kernel gate_k, up_k, down_k;
} expert_job;

/* Group the n*k assignments by expert: a counting sort keeps tokens ascending within each expert. */
static void group_by_expert(const int *expert, const float *weight, int n, int k, int E, int *offset, int *tok,
                            float *w) {
    memset(offset, 0, sizeof(int) * (size_t)(E + 1));
    for (int a = 0; a < n * k; a++) offset[expert[a] + 1]++;
    for (int e = 0; e < E; e++) offset[e + 1] += offset[e];
    for (int a = 0; a < n * k; a++) {
        int p = offset[expert[a]]++;
        tok[p] = a / k;
        w[p] = weight[a];
    }
    for (int e = E; e > 0; e--) offset[e] = offset[e - 1];
    offset[0] = 0;
}

static moe_status forward_route(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                float *out, moe_route_hook hook, void *hook_user);

typedef struct expert_bufs { float *X, *Y, *HG, *HU; } expert_bufs;

/* One wave of experts: jobs[0..n_jobs) own the assignments [p0, p1). The first wave zeroes out. */
static void run_experts(const moe_layer *L, const float *x, const int *tok, const float *gw, const expert_job *jobs,
                        int n_jobs, int p0, int p1, int first_wave, float *out, int n, const expert_bufs *b) {
    int d = L->d_model, ff = L->d_expert, n_assign = p1 - p0;
    float *X = b->X, *Y = b->Y, *HG = b->HG, *HU = b->HU;
    double avg = n_jobs ? (double)n_assign / n_jobs : 0;
    int rb_up = rows_per_task(ff, 2 * n_jobs, avg), rb_down = rows_per_task(d, n_jobs, avg);
    int up_blocks = (ff + rb_up - 1) / rb_up, down_blocks = (d + rb_down - 1) / rb_down;
    int n_up_tasks = n_jobs * up_blocks * 2, n_down_tasks = n_jobs * down_blocks;
    int small = (double)n_assign * ff * d < 32768.0;
    #pragma omp parallel if (!small)
    {
        #pragma omp for schedule(static)
        for (int p = p0; p < p1; p++) memcpy(X + (size_t)p * d, x + (size_t)tok[p] * d, (size_t)d * 4);
        #pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n_up_tasks; t++) {
            const expert_job *j = &jobs[t / (up_blocks * 2)];
            int r = t % (up_blocks * 2), is_up = r >= up_blocks, o0 = (r % up_blocks) * rb_up;
            int o1 = o0 + rb_up < ff ? o0 + rb_up : ff;
            const float *xj = X + (size_t)j->first * d;
            if (is_up) j->up_k(HU + (size_t)j->first * ff, ff, xj, d, j->cnt, j->w.up.data, d, o0, o1);
            else j->gate_k(HG + (size_t)j->first * ff, ff, xj, d, j->cnt, j->w.gate.data, d, o0, o1);
        }
        #pragma omp for schedule(static)
        for (int p = p0; p < p1; p++) moe_silu_mul(HG + (size_t)p * ff, HU + (size_t)p * ff, (size_t)ff);
        #pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n_down_tasks; t++) {
            const expert_job *j = &jobs[t / down_blocks];
            int o0 = (t % down_blocks) * rb_down, o1 = o0 + rb_down < d ? o0 + rb_down : d;
            j->down_k(Y + (size_t)j->first * d, d, HG + (size_t)j->first * ff, ff, j->cnt, j->w.down.data, ff, o0, o1);
        }
        /* combine: each thread owns a column range; assignments are in ascending expert order */
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        int c0 = (int)((long)d * id / nt), c1 = (int)((long)d * (id + 1) / nt);
        if (first_wave)
            for (int t = 0; t < n; t++) memset(out + (size_t)t * d + c0, 0, (size_t)(c1 - c0) * 4);
        #pragma omp barrier
        for (int p = p0; p < p1; p++) {
            float *o = out + (size_t)tok[p] * d;
            const float *y = Y + (size_t)p * d;
            float wt = gw[p];
            for (int c = c0; c < c1; c++) o[c] += y[c] * wt;
        }
    }
}

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
                if (!seen[e]) { seen[e] = 1; pick[np++] = e; }
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

moe_status moe_layer_forward_tokens(const moe_layer *L, const float *x, int n, const int *pos, const int32_t *tokens,
                                    float *out, moe_route_hook hook, void *hook_user, moe_arena *scratch) {
    if (L->router.ops->route) return forward_route(L, x, n, pos, tokens, out, hook, hook_user);
    return moe_layer_forward(L, x, n, pos, out, hook, hook_user, scratch);
}

moe_status moe_layer_forward(const moe_layer *L, const float *x, int n, const int *pos, float *out,
                             moe_route_hook hook, void *hook_user, moe_arena *scratch) {
    if (L->router.ops->route) return forward_route(L, x, n, pos, NULL, out, hook, hook_user);
    const moe_router_params *p = &L->router.p;
    int E = p->n_experts, k = p->top_k, d = L->d_model;
    size_t nE = (size_t)n * E, nk = (size_t)n * k;
    moe_arena_mark mark = moe_arena_push(scratch);
    moe_status st = MOE_OK;
    float *logits = moe_arena_alloc(scratch, nE * 4), *scores = moe_arena_alloc(scratch, nE * 4);
    float *weight = moe_arena_alloc(scratch, nk * 4), *gw = moe_arena_alloc(scratch, nk * 4);
    int *expert = moe_arena_alloc(scratch, nk * sizeof(int)), *tok = moe_arena_alloc(scratch, nk * sizeof(int));
    int *offset = moe_arena_alloc(scratch, ((size_t)E + 1) * sizeof(int)), *used = moe_arena_alloc(scratch, (size_t)E * sizeof(int));
    int *counts = moe_arena_alloc(scratch, (size_t)E * sizeof(int));
    expert_job *jobs = moe_arena_alloc(scratch, (size_t)E * sizeof *jobs);
    int ff = L->d_expert;
    expert_bufs b = {moe_arena_alloc(scratch, nk * d * 4), moe_arena_alloc(scratch, nk * d * 4),
                     moe_arena_alloc(scratch, nk * ff * 4), moe_arena_alloc(scratch, nk * ff * 4)};
    if (!logits || !scores || !weight || !gw || !expert || !tok || !offset || !used || !counts || !jobs || !b.X || !b.Y ||
        !b.HG || !b.HU) {
        moe_arena_pop(scratch, mark);
        return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for %d tokens", L->layer, n);
    }

    moe_router_route(&L->router, x, n, logits, scores, expert, weight);
    if (hook) {
        moe_routing r = {L->layer, n, E, k, pos, expert, weight, scores};
        hook(hook_user, &r);
    }
    group_by_expert(expert, weight, n, k, E, offset, tok, gw);

    int n_jobs = 0;
    for (int e = 0; e < E; e++)
        if (offset[e + 1] > offset[e]) used[n_jobs++] = e;
    for (int u = 0; u < n_jobs; u++) counts[u] = offset[used[u] + 1] - offset[used[u]];
    moe_store_route(L->store, L->layer, pos[0], n, used, counts, n_jobs);
    moe_store_prefetch(L->store, L->layer, used, n_jobs);
    if (L->store->predict_next && L->next && L->norm && L->next->norm && (st = predict_next(L, x, n, 0, scratch)) != MOE_OK) {
        moe_arena_pop(scratch, mark);
        return st;
    }
    int wave = L->store->max_pinned > 0 && L->store->max_pinned < n_jobs ? L->store->max_pinned : n_jobs;
    for (int w0 = 0; w0 < n_jobs && st == MOE_OK; w0 += wave) {
        int w1 = w0 + wave < n_jobs ? w0 + wave : n_jobs, acquired = w0;
        for (; acquired < w1; acquired++) {
            expert_job *j = &jobs[acquired];
            j->e = used[acquired];
            j->first = offset[j->e];
            j->cnt = offset[j->e + 1] - j->first;
            if ((st = moe_store_acquire(L->store, L->layer, j->e, &j->w)) != MOE_OK) break;
            j->gate_k = moe_gemm_pick(j->w.gate.dtype);
            j->up_k = moe_gemm_pick(j->w.up.dtype);
            j->down_k = moe_gemm_pick(j->w.down.dtype);
            if (!j->gate_k || !j->up_k || !j->down_k) {
                acquired++;
                st = moe_fail(MOE_EINTERNAL, "MoE layer %d: no kernel for expert %d's dtype", L->layer, j->e);
                break;
            }
        }
        if (st == MOE_OK)
            run_experts(L, x, tok, gw, jobs + w0, w1 - w0, jobs[w0].first, jobs[w1 - 1].first + jobs[w1 - 1].cnt, w0 == 0,
                        out, n, &b);
        for (int i = w0; i < acquired; i++) moe_store_release(L->store, L->layer, jobs[i].e);
    }

    if (st == MOE_OK && L->has_shared) {
        int sff = moe_ffn_width(&L->shared);
        float *ys = moe_arena_alloc(scratch, (size_t)n * d * 4);
        float *hg = moe_arena_alloc(scratch, (size_t)n * sff * 4), *hu = moe_arena_alloc(scratch, (size_t)n * sff * 4);
        if (!ys || !hg || !hu) st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", L->layer);
        else {
            moe_swiglu_forward(&L->shared, x, n, ys, hg, hu);
            if (L->has_shared_gate) {
                moe_matmul(logits, x, n, L->shared_gate.dtype, L->shared_gate.data, 1, d);
                for (int t = 0; t < n; t++) {
                    float g = 1.0f / (1.0f + expf(-logits[t]));
                    float *y = ys + (size_t)t * d;
                    for (int j = 0; j < d; j++) y[j] *= g;
                }
            }
            moe_add(out, ys, (size_t)n * d);
        }
    }
    moe_arena_pop(scratch, mark);
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
        int *used = fill, *counts = fill + E, n_used = 0;   /* the store hears which experts run, as above */
        for (int e = 0; e < E; e++)
            if (offset[e + 1] > offset[e]) { counts[n_used] = offset[e + 1] - offset[e]; used[n_used++] = e; }
        if (pos) moe_store_route(L->store, L->layer, pos[0], n, used, counts, n_used);
        moe_store_prefetch(L->store, L->layer, used, n_used);
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
