/* lexi.c - LExI's per-layer k from the weights alone (lexi.h).
 *
 * 1. Profiling, as the paper's Algorithm 1: each MoE layer is run on the same synthetic inputs
 *    x = z * g (z ~ N(0, 1) per coordinate from a fixed seed, g the gain of the norm before the layer,
 *    i.e. what a normalised hidden state looks like to the router) with its own k and with every
 *    candidate k in 1 .. min(E, 2 k_layer); the deviation D_l(k) is the root mean square over the
 *    tokens of ||y_k - y_own||_2 (the paper's Frobenius norm, per token so that it does not depend on
 *    the number of samples).
 * 2. Allocation: the paper searches k_l with an evolutionary algorithm under a budget of total active
 *    experts; the objective, sum over layers of D_l(k_l) with sum of k_l = round(avg_k * MoE layers),
 *    is separable, so a dynamic program over (layer, experts spent) finds its exact minimum instead.
 * The layers run with the routing policy's per-layer k (moe/route_policy.h), so the profile measures
 * exactly what inference will run. No text is read. */
#include "model/lexi.h"
#include "core/arena.h"
#include "core/error.h"
#include "model/model.h"
#include "moe/route_policy.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { LEXI_TOKENS = 256 };

static double gauss(uint64_t *s) {
    double u1 = ((moe_rng_next(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (moe_rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

/* dev[c] = deviation of layer l with k = c + 1 from its own k, for c < nc. */
static moe_status profile(moe_model *m, int l, moe_route_policy *p, float *x, float *y0, float *y, int nc, double *dev,
                          moe_arena *ar) {
    const moe_block *b = &m->blocks[l];
    int d = m->cfg.hidden, n = LEXI_TOKENS;
    uint64_t seed = 0x4c457849ULL ^ ((uint64_t)l << 32);
    for (size_t i = 0; i < (size_t)n * d; i++) {
        int j = (int)(i % (size_t)d);
        x[i] = (float)gauss(&seed) * (b->ffn_norm ? b->ffn_norm[j] : 1.0f);
    }
    moe_layer_io io = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    memset(y0, 0, sizeof(float) * (size_t)n * d);
    MOE_TRY(moe_layer_run(&b->moe, x, n, &io, y0, ar));
    io.transform = moe_route_policy_apply;
    io.transform_user = p;
    for (int c = 0; c < nc; c++) {
        p->k[l] = c + 1;
        memset(y, 0, sizeof(float) * (size_t)n * d);
        moe_status st = moe_layer_run(&b->moe, x, n, &io, y, ar);
        p->k[l] = 0;
        MOE_TRY(st);
        double ss = 0;
        for (size_t i = 0; i < (size_t)n * d; i++) ss += ((double)y[i] - y0[i]) * ((double)y[i] - y0[i]);
        dev[c] = sqrt(ss / n);
    }
    return MOE_OK;
}

moe_status moe_lexi_layer_k(moe_model *m, double avg_k, int *k) {
    int L = m->cfg.n_layers, d = m->cfg.hidden, nmoe = 0, E = 0, kmax = 0;
    for (int l = 0; l < L; l++) {
        k[l] = 0;
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) continue;
        const moe_router *R = &m->blocks[l].moe.router;
        int c = 2 * R->p.top_k < R->p.n_experts ? 2 * R->p.top_k : R->p.n_experts;
        if (c > kmax) kmax = c;
        E = R->p.n_experts;
        nmoe++;
    }
    if (!nmoe) return moe_fail(MOE_EUSAGE, "--layer-k auto: the model has no routed experts");
    int budget = (int)lround(avg_k * nmoe);
    moe_route_policy *p = NULL;
    MOE_TRY(moe_route_policy_new(L, E, &p));
    size_t nd = (size_t)LEXI_TOKENS * d;
    float *x = malloc(nd * 4), *y0 = malloc(nd * 4), *y = malloc(nd * 4);
    double *dev = malloc(sizeof(double) * (size_t)L * kmax);
    int *nc = calloc((size_t)L, sizeof(int)), *lay = malloc(sizeof(int) * (size_t)nmoe);
    double *best = malloc(sizeof(double) * (size_t)(nmoe + 1) * (budget + 1));
    int *pick = malloc(sizeof(int) * (size_t)(nmoe + 1) * (budget + 1));
    moe_arena ar = {0};
    moe_status st = MOE_OK;
    if (!x || !y0 || !y || !dev || !nc || !lay || !best || !pick) st = moe_fail(MOE_ENOMEM, "--layer-k auto: out of memory");
    for (int l = 0, i = 0; st == MOE_OK && l < L; l++) {
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) continue;
        const moe_router *R = &m->blocks[l].moe.router;
        if (R->ops->kind == MOE_ROUTE_SOFT) { st = moe_fail(MOE_EUSAGE, "--layer-k auto: layer %d's router (%s) has no per-token k", l, R->ops->name); break; }
        nc[l] = 2 * R->p.top_k < R->p.n_experts ? 2 * R->p.top_k : R->p.n_experts;
        lay[i++] = l;
        st = profile(m, l, p, x, y0, y, nc[l], dev + (size_t)l * kmax, &ar);
        moe_arena_reset(&ar);
    }
    /* best[i][b]: least total deviation of the first i MoE layers with b experts spent */
    if (st == MOE_OK) {
        int minb = nmoe, maxb = 0;
        for (int i = 0; i < nmoe; i++) maxb += nc[lay[i]];
        if (budget < minb) budget = minb;
        if (budget > maxb) budget = maxb;
        for (size_t i = 0; i < (size_t)(nmoe + 1) * (budget + 1); i++) best[i] = INFINITY;
        best[0] = 0;
        for (int i = 0; i < nmoe; i++)
            for (int b = 0; b <= budget; b++) {
                double v = best[(size_t)i * (budget + 1) + b];
                if (!isfinite(v)) continue;
                for (int c = 1; c <= nc[lay[i]] && b + c <= budget; c++) {
                    double w = v + dev[(size_t)lay[i] * kmax + c - 1];
                    size_t at = (size_t)(i + 1) * (budget + 1) + b + c;
                    if (w < best[at]) { best[at] = w; pick[at] = c; }
                }
            }
        for (int i = nmoe, b = budget; i > 0; i--) {
            int c = pick[(size_t)i * (budget + 1) + b];
            k[lay[i - 1]] = c;
            b -= c;
        }
    }
    moe_arena_free(&ar);
    free(x); free(y0); free(y); free(dev); free(nc); free(lay); free(best); free(pick);
    moe_route_policy_free(p);
    return st;
}
