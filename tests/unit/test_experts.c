/* test_experts.c - the expert executor (src/moe/experts.c) and the MoE layer around it, against plain
 * per-token loops in double precision.
 *  1. random decisions with any number of experts per token (none included), experts without rows,
 *     f32 and bf16 weights, sizes across the executor's task blocks: equal to the reference; the
 *     same bits with 1 or 2 threads and with a store that holds 1, 2 or 3 experts at once (waves),
 *     which never has more acquired than that and releases every acquire;
 *  2. expert FFN variants: biases on gate/up/down, gpt-oss's clamped SwiGLU, both mixed in one layer;
 *  3. factored expert gates (Autonomy-of-Experts) reading the router's per-expert outputs;
 *  4. Soft MoE's dense dispatch and combine;
 *  5. a share of the experts (e0, e1);
 *  6. a decision naming an expert or token out of range is refused, not run;
 *  7. the whole layer (moe_layer_run): a select router, a transform that drops and forces experts,
 *     the hook's padded report of what ran, shared experts scaled by their sigmoid gate;
 *  8. expert parallelism (moe_layer_ep_experts) with threads as ranks and an in-process transport:
 *     2 to 4 ranks, random placements, each rank's input poisoned (NaN) outside the tokens it owns so
 *     that only dispatched rows can be used: every rank's output has the single executor's bits. */
#include "core/alloc.h"
#include "core/arena.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/matmul.h"
#include "moe/ep.h"
#include "moe/experts.h"
#include "moe/ffn.h"
#include "testrand.h"
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

/* ---- a store that counts ------------------------------------------------------------------------ */

typedef struct tstore {
    int E;
    moe_ffn_weights *w;
    unsigned char *held;
    int n_held, max_held, acquires, releases, double_acquire;
} tstore;

static moe_status ts_acquire(void *self, int layer, int e, moe_ffn_weights *out) {
    tstore *s = self;
    (void)layer;
    if (s->held[e]) s->double_acquire++;
    s->held[e] = 1;
    if (++s->n_held > s->max_held) s->max_held = s->n_held;
    s->acquires++;
    *out = s->w[e];
    return MOE_OK;
}
static void ts_release(void *self, int layer, int e) {
    tstore *s = self;
    (void)layer;
    s->held[e] = 0;
    s->n_held--;
    s->releases++;
}
static const moe_store_ops k_tstore_ops = {"test", ts_acquire, ts_release, NULL, NULL, NULL, NULL};

/* ---- random weights ----------------------------------------------------------------------------- */

static float runif(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

/* A matrix [rows][cols] of dtype dt with entries of scale 1/sqrt(cols); f32 copy in ref. */
static moe_tensor make_mat(int rows, int cols, moe_dtype dt, float **ref) {
    moe_tensor t;
    memset(&t, 0, sizeof t);
    size_t n = (size_t)rows * cols;
    float *f = malloc(sizeof(float) * n);
    float s = 1.0f / sqrtf((float)cols);
    for (size_t i = 0; i < n; i++) f[i] = runif() * s * 2.0f;
    t.dtype = dt;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    if (dt == MOE_BF16) {
        uint16_t *b = malloc(sizeof(uint16_t) * n);
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &f[i], 4);
            b[i] = (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
            u = (uint32_t)b[i] << 16;
            memcpy(&f[i], &u, 4);   /* the reference sees the rounded value */
        }
        t.data = b;
        t.nbytes = n * 2;
    } else {
        float *c = malloc(sizeof(float) * n);
        memcpy(c, f, sizeof(float) * n);
        t.data = c;
        t.nbytes = n * 4;
    }
    *ref = f;
    return t;
}

typedef struct ref_ffn {
    float *g, *u, *dn;        /* f32 copies */
    float *bg, *bu, *bd;      /* biases or NULL */
    moe_ffn_act act;
    int gin, ff, d;
} ref_ffn;

static float *rand_vec(int n, float s) {
    float *v = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) v[i] = runif() * s;
    return v;
}

static void make_expert(moe_ffn_weights *w, ref_ffn *r, int d, int ff, int gin, moe_dtype dt, int bias, int act_kind) {
    memset(w, 0, sizeof *w);
    memset(r, 0, sizeof *r);
    w->gate = make_mat(ff, gin, dt, &r->g);
    w->up = make_mat(ff, d, dt, &r->u);
    w->down = make_mat(d, ff, dt, &r->dn);
    if (bias) {
        w->gate_bias = r->bg = rand_vec(ff, 0.5f);
        w->up_bias = r->bu = rand_vec(ff, 0.5f);
        w->down_bias = r->bd = rand_vec(d, 0.5f);
    }
    w->act.kind = act_kind;
    w->act.alpha = 1.702f;
    w->act.limit = 0.9f;   /* small, so that the clamps bite */
    r->act = w->act;
    r->gin = gin;
    r->ff = ff;
    r->d = d;
}

static void free_expert(moe_ffn_weights *w, ref_ffn *r) {
    free((void *)w->gate.data); free((void *)w->up.data); free((void *)w->down.data);
    free(r->g); free(r->u); free(r->dn); free(r->bg); free(r->bu); free(r->bd);
}

/* y[d] += scale * FFN(x) in double: gate input gx[gin], up input x[d]. */
static void ref_apply(const ref_ffn *r, const float *gx, const float *x, double scale, double *y) {
    double *h = malloc(sizeof(double) * (size_t)r->ff);
    for (int o = 0; o < r->ff; o++) {
        double g = r->bg ? r->bg[o] : 0, u = r->bu ? r->bu[o] : 0;
        for (int i = 0; i < r->gin; i++) g += (double)r->g[(size_t)o * r->gin + i] * gx[i];
        for (int i = 0; i < r->d; i++) u += (double)r->u[(size_t)o * r->d + i] * x[i];
        if (r->act.kind == MOE_ACT_SWIGLU_CLAMP) {
            double L = r->act.limit, gc = g < L ? g : L, uc = u < -L ? -L : u > L ? L : u;
            h[o] = (uc + 1.0) * gc / (1.0 + exp(-(double)r->act.alpha * gc));
        } else {
            h[o] = g / (1.0 + exp(-g)) * u;
        }
    }
    for (int j = 0; j < r->d; j++) {
        double s = r->bd ? r->bd[j] : 0;
        for (int o = 0; o < r->ff; o++) s += (double)r->dn[(size_t)j * r->ff + o] * h[o];
        y[j] += scale * s;
    }
    free(h);
}

static double row_err(const float *got, const double *ref, int n, int d) {
    double worst = 0;
    for (int t = 0; t < n; t++) {
        double mx = 1e-3;
        for (int j = 0; j < d; j++) mx = fmax(mx, fabs(ref[(size_t)t * d + j]));
        for (int j = 0; j < d; j++) {
            double e = fabs(got[(size_t)t * d + j] - ref[(size_t)t * d + j]) / mx;
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    }
    return worst;
}

/* ---- one layer under test ----------------------------------------------------------------------- */

typedef struct fixture {
    int E, d, ff, rank;
    moe_ffn_weights *w;
    ref_ffn *r;
    tstore ts;
    moe_store store;
    moe_layer L;
} fixture;

/* variant: 0 plain, 1 biases and mixed activations, 2 factored gates of width rank */
static void fixture_init(fixture *f, int E, int d, int ff, moe_dtype dt, int variant, int rank) {
    memset(f, 0, sizeof *f);
    f->E = E; f->d = d; f->ff = ff; f->rank = variant == 2 ? rank : 0;
    f->w = calloc((size_t)E, sizeof *f->w);
    f->r = calloc((size_t)E, sizeof *f->r);
    for (int e = 0; e < E; e++)
        make_expert(&f->w[e], &f->r[e], d, ff, f->rank ? f->rank : d, dt, variant == 1 && e % 3 != 2,
                    variant == 1 && e % 2 ? MOE_ACT_SWIGLU_CLAMP : MOE_ACT_SILU);
    f->ts.E = E;
    f->ts.w = f->w;
    f->ts.held = calloc((size_t)E, 1);
    f->store.ops = &k_tstore_ops;
    f->store.self = &f->ts;
    f->L.layer = 3;
    f->L.d_model = d;
    f->L.d_expert = ff;
    f->L.store = &f->store;
    f->L.router.ops = moe_router_find(variant == 2 ? "aoe" : "top_p");
    f->L.router.p.n_experts = E;
    f->L.router.p.d_model = d;
    f->L.router.p.rank = rank;
}

static void fixture_free(fixture *f) {
    for (int e = 0; e < f->E; e++) free_expert(&f->w[e], &f->r[e]);
    free(f->w); free(f->r); free(f->ts.held);
}

/* A random sparse decision: each token gets 0..kmax distinct experts among the first `live` ones
 * (the others get no rows), weights of mixed sign and size, tokens in ascending order. */
static void random_decision(moe_assign *a, int n, int E, int kmax, int live) {
    a->n = 0;
    for (int t = 0; t < n; t++) {
        int k = rint_(0, kmax < live ? kmax : live);
        if (t == 0 && k == 0) k = 1;
        unsigned char used[64] = {0};
        for (int j = 0; j < k; j++) {
            int e;
            do e = rint_(0, live - 1); while (used[e]);
            used[e] = 1;
            a->tok[a->n] = t;
            a->exp[a->n] = e;
            a->w[a->n++] = rfloat();
        }
    }
    (void)E;
}

static void ref_sparse(const fixture *f, const moe_assign *a, const float *x, const float *logits, int e0, int e1,
                       double *ref, int n) {
    int d = f->d;
    memset(ref, 0, sizeof(double) * (size_t)n * d);
    for (int i = 0; i < a->n; i++) {
        int t = a->tok[i], e = a->exp[i];
        if (e < e0 || e >= e1) continue;
        const float *xt = x + (size_t)t * d;
        const float *gx = f->rank ? logits + (size_t)t * a->n_logits + (size_t)e * f->rank : xt;
        ref_apply(&f->r[e], gx, xt, a->w[i], ref + (size_t)t * d);
    }
}

static moe_status run_exec(fixture *f, const moe_assign *a, const float *x, const float *logits, int n, int e0, int e1,
                           int threads, int max_pinned, float *out, moe_arena *ar) {
    f->store.max_pinned = max_pinned;
    f->ts.max_held = f->ts.acquires = f->ts.releases = f->ts.double_acquire = 0;
    omp_set_num_threads(threads);
    moe_experts_call c = {x, n, a, logits, e0, e1, NULL, NULL, NULL};
    moe_status st = moe_experts_forward(&f->L, &c, out, ar);
    omp_set_num_threads(2);
    return st;
}

static void test_sparse(int variant, moe_dtype dt) {
    for (int rep = 0; rep < 6; rep++) {
        int E = rint_(1, 12), d = rint_(8, 130), ff = variant == 2 ? rint_(8, 60) : rint_(8, 200), n = rint_(1, 40);
        int rank = rint_(1, 9), live = rint_(1, E), kmax = rint_(1, 5);
        if (rep == 0) { d = 200; ff = 250; n = 37; }   /* several row blocks per task split */
        fixture f;
        fixture_init(&f, E, d, ff, dt, variant, rank);
        int nl = variant == 2 ? E * rank : E;
        moe_arena ar = {0};
        moe_assign a;
        CHECK(moe_assign_init(&a, n, E, nl) == MOE_OK, "init");
        float *x = rand_vec(n * d, 1.5f), *logits = rand_vec(n * nl, 1.0f);
        float *out = malloc(sizeof(float) * (size_t)n * d), *o2 = malloc(sizeof(float) * (size_t)n * d);
        double *ref = malloc(sizeof(double) * (size_t)n * d);
        random_decision(&a, n, E, kmax, live);
        CHECK(moe_assign_group(&a, "test") == MOE_OK, "group: %s", moe_last_error());
        for (int i = 0; i < n * d; i++) out[i] = NAN;   /* tokens without rows must come out 0 */
        CHECK(run_exec(&f, &a, x, logits, n, 0, E, 2, 0, out, &ar) == MOE_OK, "run: %s", moe_last_error());
        ref_sparse(&f, &a, x, logits, 0, E, ref, n);
        double err = row_err(out, ref, n, d);
        double tol = dt == MOE_BF16 ? 3e-5 : 2e-5;
        CHECK(err <= tol, "variant %d dtype %d E %d d %d ff %d n %d: error %.3g", variant, (int)dt, E, d, ff, n, err);
        int used = 0;
        for (int e = 0; e < E; e++) used += a.offset[e + 1] > a.offset[e];
        CHECK(f.ts.acquires == used && f.ts.releases == used && !f.ts.double_acquire,
              "acquires %d releases %d for %d experts", f.ts.acquires, f.ts.releases, used);
        CHECK(run_exec(&f, &a, x, logits, n, 0, E, 1, 0, o2, &ar) == MOE_OK, "run");
        CHECK(!memcmp(out, o2, sizeof(float) * (size_t)n * d), "1 thread differs from 2 (variant %d)", variant);
        for (int pin = 1; pin <= 3; pin++) {
            CHECK(run_exec(&f, &a, x, logits, n, 0, E, 2, pin, o2, &ar) == MOE_OK, "run waves");
            if (memcmp(out, o2, sizeof(float) * (size_t)n * d)) {
                int at = 0;
                while (!memcmp(out + at, o2 + at, 4)) at++;
                CHECK(0, "waves of %d differ from one pass (variant %d dtype %d E %d d %d ff %d n %d rows %d: [%d][%d] %.9g vs %.9g)", pin,
                      variant, (int)dt, E, d, ff, n, a.rows, at / d, at % d, out[at], o2[at]);
            }
            CHECK(f.ts.max_held <= pin && f.ts.acquires == used && f.ts.releases == used,
                  "waves of %d: %d held at once, %d acquires, %d releases", pin, f.ts.max_held, f.ts.acquires, f.ts.releases);
        }
        /* a share of the experts */
        int e0 = rint_(0, E - 1), e1 = rint_(e0, E);
        CHECK(run_exec(&f, &a, x, logits, n, e0, e1, 2, 0, o2, &ar) == MOE_OK, "run share");
        ref_sparse(&f, &a, x, logits, e0, e1, ref, n);
        err = row_err(o2, ref, n, d);
        CHECK(err <= tol, "experts [%d, %d): error %.3g", e0, e1, err);
        moe_assign_free(&a);
        moe_arena_free(&ar);
        free(x); free(logits); free(out); free(o2); free(ref);
        fixture_free(&f);
    }
}

static void test_soft(void) {
    for (int rep = 0; rep < 4; rep++) {
        int E = rint_(1, 6), S = rint_(1, 3), d = rint_(8, 100), ff = rint_(8, 120), n = rint_(1, 30), nl = E * S;
        fixture f;
        fixture_init(&f, E, d, ff, MOE_F32, rep % 2, 0);
        f.L.router.ops = moe_router_find("soft");
        f.L.router.p.slots = S;
        moe_arena ar = {0};
        moe_assign a;
        CHECK(moe_assign_init_arena(&a, n, E, nl, 1, &ar) == MOE_OK, "init");
        for (int i = 0; i < n * nl; i++) { a.dispatch[i] = runif(); a.combine[i] = runif(); }
        a.n = 0;
        CHECK(moe_assign_group(&a, "test") == MOE_OK && a.rows == nl, "soft rows %d", a.rows);
        float *x = rand_vec(n * d, 1.0f), *out = malloc(sizeof(float) * (size_t)n * d), *o2 = malloc(sizeof(float) * (size_t)n * d);
        double *ref = calloc((size_t)n * d, sizeof(double));
        float *slot = malloc(sizeof(float) * (size_t)d);
        double *ys = calloc((size_t)nl * d, sizeof(double));
        for (int j = 0; j < nl; j++) {
            for (int i = 0; i < d; i++) {
                double s = 0;
                for (int t = 0; t < n; t++) s += (double)a.dispatch[(size_t)t * nl + j] * x[(size_t)t * d + i];
                slot[i] = (float)s;
            }
            ref_apply(&f.r[j / S], slot, slot, 1.0, ys + (size_t)j * d);
        }
        for (int t = 0; t < n; t++)
            for (int j = 0; j < nl; j++)
                for (int i = 0; i < d; i++) ref[(size_t)t * d + i] += a.combine[(size_t)t * nl + j] * ys[(size_t)j * d + i];
        CHECK(run_exec(&f, &a, x, NULL, n, 0, E, 2, 0, out, &ar) == MOE_OK, "soft run: %s", moe_last_error());
        double err = row_err(out, ref, n, d);
        CHECK(err <= 3e-5, "soft E %d S %d d %d ff %d n %d: error %.3g", E, S, d, ff, n, err);
        CHECK(run_exec(&f, &a, x, NULL, n, 0, E, 2, 1, o2, &ar) == MOE_OK, "soft waves");
        CHECK(!memcmp(out, o2, sizeof(float) * (size_t)n * d), "soft: waves of 1 differ from one pass");
        moe_arena_free(&ar);
        free(x); free(out); free(o2); free(ref); free(slot); free(ys);
        fixture_free(&f);
    }
}

static void test_bad_decision(void) {
    moe_assign a;
    CHECK(moe_assign_init(&a, 3, 4, 4) == MOE_OK, "init");
    a.n = 2;
    a.tok[0] = 0; a.exp[0] = 1; a.w[0] = 1;
    a.tok[1] = 2; a.exp[1] = 4; a.w[1] = 1;
    CHECK(moe_assign_group(&a, "test") == MOE_EINTERNAL, "expert 4 of 4 accepted");
    a.exp[1] = -1;
    CHECK(moe_assign_group(&a, "test") == MOE_EINTERNAL, "expert -1 accepted");
    a.exp[1] = 3; a.tok[1] = 3;
    CHECK(moe_assign_group(&a, "test") == MOE_EINTERNAL, "token 3 of 3 accepted");
    a.n = a.cap + 1;
    CHECK(moe_assign_group(&a, "test") == MOE_EINTERNAL, "more assignments than room accepted");
    moe_assign_free(&a);
}

/* ---- the whole layer ---------------------------------------------------------------------------- */

typedef struct seen {
    int n, kmax, calls;
    int ex[64 * 16];
    float w[64 * 16];
} seen;

static void hook(void *user, const moe_routing *r) {
    seen *s = user;
    s->calls++;
    s->n = r->n_tokens;
    s->kmax = r->top_k;
    memcpy(s->ex, r->expert, sizeof(int) * (size_t)r->n_tokens * r->top_k);
    memcpy(s->w, r->weight, sizeof(float) * (size_t)r->n_tokens * r->top_k);
}

/* Steering in miniature: drop assignments whose weight is below 0.3, and force expert 0 on token 0
 * (appended last, out of token order) unless it is there already. */
static moe_status transform(void *user, const moe_layer *L, const moe_route_in *in, moe_assign *a) {
    (void)user; (void)L; (void)in;
    int m = 0, has0 = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->w[i] < 0.3f) continue;
        a->tok[m] = a->tok[i]; a->exp[m] = a->exp[i]; a->w[m] = a->w[i];
        has0 |= a->tok[m] == 0 && a->exp[m] == 0;
        m++;
    }
    if (!has0) { a->tok[m] = 0; a->exp[m] = 0; a->w[m++] = 0.25f; }
    a->n = m;
    return MOE_OK;
}

static void test_layer(void) {
    int E = 7, d = 40, ff = 24, n = 13, sff = 30, k = 3;
    fixture f;
    fixture_init(&f, E, d, ff, MOE_F32, 0, 0);
    moe_layer *L = &f.L;
    L->router.ops = moe_router_find("softmax_topk");
    L->router.p = (moe_router_params){.n_experts = E, .top_k = k, .d_model = d, .norm_topk_prob = 1, .routed_scaling = 1.0};
    float *gref, *sgref;
    L->router.gate = make_mat(E, d, MOE_F32, &gref);
    ref_ffn shared;
    make_expert(&L->shared, &shared, d, sff, d, MOE_F32, 0, MOE_ACT_SILU);
    L->has_shared = 1;
    L->shared_gate = make_mat(1, d, MOE_F32, &sgref);
    L->has_shared_gate = 1;
    float *x = rand_vec(n * d, 1.0f), *out = malloc(sizeof(float) * (size_t)n * d);
    int pos[16];
    for (int t = 0; t < n; t++) pos[t] = 100 + t;
    seen s;
    memset(&s, 0, sizeof s);
    moe_arena ar = {0};
    moe_layer_io io = {pos, NULL, hook, &s, transform, NULL, NULL};
    CHECK(moe_layer_run(L, x, n, &io, out, &ar) == MOE_OK, "layer: %s", moe_last_error());
    /* reference: the router's own decision, the same transform, per-token sums, the gated shared expert */
    moe_assign a;
    CHECK(moe_assign_init(&a, n, E, E) == MOE_OK, "init");
    float *logits = malloc(sizeof(float) * (size_t)n * E);
    moe_matmul(logits, x, n, MOE_F32, L->router.gate.data, E, d);   /* the layer's own product: the same choice */
    moe_route_in in = {logits, n, n, NULL, pos, L->layer, 0, NULL};
    CHECK(moe_router_assign(&L->router, &in, &a) == MOE_OK, "assign");
    transform(NULL, L, &in, &a);
    double *ref = malloc(sizeof(double) * (size_t)n * d);
    ref_sparse(&f, &a, x, NULL, 0, E, ref, n);
    for (int t = 0; t < n; t++) {
        double g = 0;
        for (int i = 0; i < d; i++) g += (double)sgref[i] * x[(size_t)t * d + i];
        ref_apply(&shared, x + (size_t)t * d, x + (size_t)t * d, 1.0 / (1.0 + exp(-g)), ref + (size_t)t * d);
    }
    double err = row_err(out, ref, n, d);
    CHECK(err <= 2e-5, "layer with transform and gated shared expert: error %.3g", err);
    /* the hook saw what ran: per token, the transformed experts in order, padded with -1 */
    int kmax = 0, cnt[16] = {0};
    for (int i = 0; i < a.n; i++) kmax = ++cnt[a.tok[i]] > kmax ? cnt[a.tok[i]] : kmax;
    CHECK(s.calls == 1 && s.n == n && s.kmax == kmax, "hook: %d calls, %d tokens, width %d (want %d)", s.calls, s.n, s.kmax, kmax);
    memset(cnt, 0, sizeof cnt);
    int bad = 0;
    for (int i = 0; i < a.n; i++) {
        int at = a.tok[i] * kmax + cnt[a.tok[i]]++;
        bad += s.ex[at] != a.exp[i] || s.w[at] != a.w[i];
    }
    for (int t = 0; t < n; t++)
        for (int j = cnt[t]; j < kmax; j++) bad += s.ex[t * kmax + j] != -1;
    CHECK(!bad, "hook report differs from the executed decision in %d places", bad);
    /* without a transform, the select router's decision reaches the hook as is: k per token */
    memset(&s, 0, sizeof s);
    io.transform = NULL;
    CHECK(moe_layer_run(L, x, n, &io, out, &ar) == MOE_OK && s.kmax == k, "hook width %d, want %d", s.kmax, k);
    CHECK(f.ts.n_held == 0, "%d experts left acquired", f.ts.n_held);
    moe_assign_free(&a);
    moe_arena_free(&ar);
    free(x); free(out); free(logits); free(ref);
    free((void *)L->router.gate.data); free(gref); free((void *)L->shared_gate.data); free(sgref);
    free_expert(&L->shared, &shared);
    fixture_free(&f);
}

/* ---- expert parallelism: threads as ranks ------------------------------------------------------- */

#define MAX_RANKS 4
typedef struct hub {
    int R, mismatch;
    pthread_barrier_t bar;
    const float *send[MAX_RANKS];
    const int *scount[MAX_RANKS], *sdispl[MAX_RANKS];
    float *buf[MAX_RANKS];
} hub;
typedef struct rank_ctx {
    hub *h;
    int me;
    moe_ep ep;
    tstore ts;
    moe_store store;
    moe_layer L;
    const moe_assign *a;
    const float *x, *logits;
    float *out;
    int n;
    moe_status st;
} rank_ctx;

static moe_status hub_alltoallv(void *comm, const float *send, const int *scount, const int *sdispl, float *recv,
                                const int *rcount, const int *rdispl) {
    rank_ctx *c = comm;
    hub *h = c->h;
    h->send[c->me] = send; h->scount[c->me] = scount; h->sdispl[c->me] = sdispl;
    pthread_barrier_wait(&h->bar);
    for (int q = 0; q < h->R; q++) {
        if (h->scount[q][c->me] != rcount[q]) { __atomic_fetch_add(&h->mismatch, 1, __ATOMIC_RELAXED); continue; }
        memcpy(recv + rdispl[q], h->send[q] + h->sdispl[q][c->me], sizeof(float) * (size_t)rcount[q]);
    }
    pthread_barrier_wait(&h->bar);
    return MOE_OK;
}

static moe_status hub_allgatherv(void *comm, float *buf, const int *count, const int *displ) {
    rank_ctx *c = comm;
    hub *h = c->h;
    h->buf[c->me] = buf;
    pthread_barrier_wait(&h->bar);
    for (int q = 0; q < h->R; q++)
        if (q != c->me) memcpy(buf + displ[q], h->buf[q] + displ[q], sizeof(float) * (size_t)count[q]);
    pthread_barrier_wait(&h->bar);
    return MOE_OK;
}

static void *rank_main(void *p) {
    rank_ctx *c = p;
    moe_arena ar = {0};
    omp_set_num_threads(1 + c->me % 2);
    c->st = moe_layer_ep_experts(&c->L, c->x, c->n, c->a, c->logits, c->out, &ar);
    moe_arena_free(&ar);
    return NULL;
}

static void test_ep(int variant) {
    for (int rep = 0; rep < 4; rep++) {
        int E = rint_(1, 12), d = rint_(8, 100), ff = variant == 2 ? rint_(8, 60) : rint_(8, 150), n = rint_(1, 30);
        int rank = rint_(1, 6), live = rint_(1, E), kmax = rint_(1, 5);
        fixture f;
        fixture_init(&f, E, d, ff, MOE_F32, variant, rank);
        int nl = variant == 2 ? E * rank : E, n_layers = f.L.layer + 1;
        moe_arena ar = {0};
        moe_assign a;
        CHECK(moe_assign_init(&a, n, E, nl) == MOE_OK, "init");
        float *x = rand_vec(n * d, 1.5f), *logits = rand_vec(n * nl, 1.0f);
        float *want = malloc(sizeof(float) * (size_t)n * d);
        random_decision(&a, n, E, kmax, live);
        CHECK(moe_assign_group(&a, "test") == MOE_OK, "group: %s", moe_last_error());
        CHECK(run_exec(&f, &a, x, logits, n, 0, E, 2, 0, want, &ar) == MOE_OK, "run: %s", moe_last_error());
        for (int R = 2; R <= MAX_RANKS; R++) {
            int *owner = malloc(sizeof(int) * (size_t)n_layers * E);
            for (int i = 0; i < n_layers * E; i++) owner[i] = rint_(0, R - 1);
            hub h = {.R = R};
            pthread_barrier_init(&h.bar, NULL, (unsigned)R);
            rank_ctx rc[MAX_RANKS];
            pthread_t th[MAX_RANKS];
            for (int q = 0; q < R; q++) {
                rank_ctx *c = &rc[q];
                memset(c, 0, sizeof *c);
                c->h = &h; c->me = q; c->a = &a; c->logits = logits; c->n = n;
                c->ts.E = E; c->ts.w = f.w; c->ts.held = calloc((size_t)E, 1);
                c->store.ops = &k_tstore_ops; c->store.self = &c->ts; c->store.max_pinned = q == 1 ? 2 : 0;
                c->L = f.L;
                c->L.store = &c->store;
                c->L.ep = &c->ep;
                c->ep = (moe_ep){.rank = q, .size = R, .n_layers = n_layers, .n_experts = E, .owner = owner, .comm = c,
                                 .alltoallv = hub_alltoallv, .allgatherv = hub_allgatherv};
                /* only the rank's own tokens are valid in its input: the others must arrive by dispatch */
                float *xq = malloc(sizeof(float) * (size_t)n * d);
                for (int t = 0; t < n; t++)
                    for (int j = 0; j < d; j++)
                        xq[(size_t)t * d + j] = t >= n * q / R && t < n * (q + 1) / R ? x[(size_t)t * d + j] : NAN;
                c->x = xq;
                c->out = malloc(sizeof(float) * (size_t)n * d);
                for (int i = 0; i < n * d; i++) c->out[i] = NAN;
            }
            for (int q = 0; q < R; q++) pthread_create(&th[q], NULL, rank_main, &rc[q]);
            for (int q = 0; q < R; q++) pthread_join(th[q], NULL);
            uint64_t rows = 0;
            for (int q = 0; q < R; q++) {
                rank_ctx *c = &rc[q];
                CHECK(c->st == MOE_OK, "rank %d of %d: %s", q, R, moe_last_error());
                CHECK(!memcmp(c->out, want, sizeof(float) * (size_t)n * d),
                      "variant %d: rank %d of %d differs from one executor (E %d d %d ff %d n %d)", variant, q, R, E, d, ff, n);
                CHECK(c->ts.acquires == c->ts.releases && !c->ts.double_acquire, "rank %d: acquires %d releases %d", q,
                      c->ts.acquires, c->ts.releases);
                for (int e = 0; e < E; e++)
                    CHECK(!c->ts.held[e], "rank %d holds expert %d", q, e);
                rows += c->ep.stats.rows_run;
                free((void *)c->x); free(c->out); free(c->ts.held);
            }
            CHECK(rows == (uint64_t)a.rows, "%d ranks ran %llu rows of %d", R, (unsigned long long)rows, a.rows);
            CHECK(!h.mismatch, "send and receive counts disagree %d times", h.mismatch);
            pthread_barrier_destroy(&h.bar);
            free(owner);
        }
        moe_assign_free(&a);
        moe_arena_free(&ar);
        free(x); free(logits); free(want);
        fixture_free(&f);
    }
}

int main(int argc, char **argv) {
    static const uint64_t seeds[] = {1, 2, 3};
    uint64_t fresh = argc > 1 ? strtoull(argv[1], NULL, 10) : (uint64_t)time(NULL);   /* a seed to replay */
    for (size_t i = argc > 1 ? sizeof seeds / sizeof *seeds : 0; i <= sizeof seeds / sizeof *seeds; i++) {
        uint64_t seed = i < sizeof seeds / sizeof *seeds ? seeds[i] : fresh;
        g_rng = seed;
        int before = fails;
        test_sparse(0, MOE_F32);
        test_sparse(0, MOE_BF16);
        test_sparse(1, MOE_F32);
        test_sparse(2, MOE_F32);
        test_soft();
        test_ep(0);
        test_ep(1);
        test_ep(2);
        if (fails != before) printf("(seed %llu)\n", (unsigned long long)seed);
    }
    g_rng = 77;
    test_bad_decision();
    test_layer();
    if (!fails) printf("expert executor: all checks passed\n");
    return fails != 0;
}
