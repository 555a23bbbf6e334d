/* test_train_grad.c - gradient checks of training: every op's backward and every differentiable
 * router's backward against central finite differences, the balancing losses, and the whole model.
 * Errors are measured per tensor as ||analytic - numeric|| / max(||analytic||, ||numeric||, 0.01) over
 * the checked coordinates and must stay below 1e-3 (the floor keeps tensors whose gradient is nearly
 * zero from being judged on float32 rounding alone). Numeric derivatives use Richardson extrapolation of
 * two central differences (2h and h), which cancels the h^2 term so that h can be large enough for
 * float32 rounding to be negligible; a third difference at h/2 checks that the higher-order terms are
 * negligible too. Where they are not, or where a step changes a discrete routing decision (a router's
 * choice has no derivative), the step is halved (up to four times); coordinates that still change
 * routing are skipped, and the test fails if fewer than 3 remain. Whole models run on the scalar path
 * (products summed in double, libm exp), the others' oracle, for the least rounding noise.
 * Also: the blocked/AVX2 products against the plain-loop product, and the product-based attention
 * against its plain-loop oracle. */
#include "moe/router_losses.h"
#include "train/tgemm.h"
#include "train/tops.h"
#include "train_testutil.h"
#include "core/cpu.h"

#define TOL 1e-3
#define FLOOR 1e-2

/* ---- a generic finite-difference checker ------------------------------------------------------ */

typedef double (*loss_fn)(void *ctx);
typedef uint64_t (*sig_fn)(void *ctx);   /* signature of discrete decisions (0 if none) */

static double central(float *x, double h, loss_fn f, void *ctx, sig_fn sig, uint64_t base, int *flip) {
    float x0 = *x;
    *x = (float)(x0 + h); double lp = f(ctx); uint64_t sp = sig ? sig(ctx) : 0;
    *x = (float)(x0 - h); double lm = f(ctx); uint64_t sm = sig ? sig(ctx) : 0;
    double dh = (double)(float)(x0 + h) - (double)(float)(x0 - h);   /* the step actually taken */
    *x = x0;
    if (sig && (sp != base || sm != base)) *flip = 1;
    return (lp - lm) / dh;
}

/* Check grad[i] = dL/dx[i] on up to max_coords coordinates; returns the relative error. */
static double fd_check(const char *label, float *x, const float *grad, size_t n, loss_fn f, void *ctx, sig_fn sig,
                       double h, int max_coords) {
    uint64_t base = sig ? (f(ctx), sig(ctx)) : 0;
    double num2 = 0, den_a = 0, den_n = 0;
    int checked = 0, skipped = 0;
    size_t stride = n > (size_t)max_coords ? n / (size_t)max_coords : 1;
    size_t start = n > (size_t)max_coords ? (size_t)(moe_rng_next(&g_rng) % stride) : 0;
    for (size_t i = start; i < n; i += stride) {
        /* a smaller step where the larger one changed a routing decision (more rounding noise, but
         * still far below the tolerance) */
        int flip = 1, curved = 1;
        double d1 = 0, d2 = 0, d3, num = 0;
        for (double hh = h; (flip || curved) && hh > h / 20; hh /= 2) {
            flip = 0;
            d1 = central(&x[i], 2 * hh, f, ctx, sig, base, &flip);
            d2 = central(&x[i], hh, f, ctx, sig, base, &flip);
            d3 = central(&x[i], hh / 2, f, ctx, sig, base, &flip);
            /* the estimate from (2h, h); the one from (h, h/2) only checks that higher-order terms
             * are negligible (it carries twice the rounding noise, hence the absolute allowance) */
            num = (4 * d2 - d1) / 3;
            double fine = (4 * d3 - d2) / 3;
            curved = fabs(num - fine) > 3e-4 * fmax(fabs(num), fabs(fine)) + 2e-5;
        }
        if (flip) { skipped++; continue; }
        if (getenv("MOE_TEST_PROBE") && fabs(num - grad[i]) > 1e-3 * fmax(fabs(num), 1e-2)) {
            for (double hh = 4 * h; hh > h / 200; hh /= 2) {
                int fl = 0;
                double dd = central(&x[i], hh, f, ctx, sig, base, &fl);
                printf("    probe %s[%zu] h %.5f: %.7g%s\n", label, i, hh, dd, fl ? " (flip)" : "");
            }
        }
        if (getenv("MOE_TEST_COORDS")) printf("  %s[%zu] analytic %.6g numeric %.6g (2h: %.6g, h: %.6g)\n", label, i, grad[i], num, d1, d2);
        num2 += (grad[i] - num) * (grad[i] - num);
        den_a += (double)grad[i] * grad[i];
        den_n += num * num;
        checked++;
    }
    /* relative to the larger norm, but never to less than FLOOR: a tensor whose gradient is near zero
     * (an expert that got one token) would otherwise be judged on float32 rounding alone */
    double den = fmax(sqrt(fmax(den_a, den_n)), FLOOR);
    double rel = sqrt(num2) / den;
    int bad = rel > TOL || checked < (max_coords >= 10 ? 3 : 1);
    if (bad || getenv("MOE_TEST_VERBOSE"))
        printf("%s %-44s rel err %.2e  (|g| %.3g, %d coords, %d skipped)\n", bad ? "FAIL" : "ok  ", label, rel, sqrt(den_a),
               checked, skipped);
    CHECK(!bad, "%s: relative error %.3g over %d coordinates (%d skipped for routing changes)", label, rel, checked, skipped);
    return rel;
}

/* ---- products --------------------------------------------------------------------------------- */

static void test_gemm(void) {
    static const int shapes[][3] = {{1, 1, 1}, {7, 17, 5}, {6, 16, 8}, {13, 35, 300}, {32, 64, 33}, {5, 3, 600}};
    for (int level = MOE_SIMD_SCALAR; level <= (int)moe_simd_detect() && level <= MOE_SIMD_AVX2; level++) {
        moe_simd_force((moe_simd)level);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int acc = 0; acc < 2; acc++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                size_t lda = (size_t)K + 3, ldb = (size_t)N + 5, ldc = (size_t)N + 2;
                float *A = malloc(sizeof(float) * M * lda), *B = malloc(sizeof(float) * K * ldb);
                float *C = malloc(sizeof(float) * M * ldc), *R = malloc(sizeof(float) * M * ldc);
                fill(A, M * lda, 1); fill(B, K * ldb, 1); fill(C, M * ldc, 1);
                memcpy(R, C, sizeof(float) * M * ldc);
                moe_tgemm(C, ldc, A, lda, B, ldb, M, N, K, acc);
                moe_tgemm_ref(R, ldc, A, lda, B, ldb, M, N, K, acc);
                double err = 0;
                for (int i = 0; i < M; i++)
                    for (size_t j = 0; j < ldc; j++) {
                        double e = fabs((double)C[i * ldc + j] - R[i * ldc + j]);
                        if (j >= (size_t)N) CHECK(e == 0, "gemm wrote outside its columns");
                        err = fmax(err, e);
                    }
                CHECK(err < 1e-4 * sqrt((double)K), "gemm %dx%dx%d acc=%d simd=%d: max error %g", M, N, K, acc, level, err);
                free(A); free(B); free(C); free(R);
            }
    }
    moe_simd_force(moe_simd_detect());
    /* the weight-gradient form: A read transposed through strides */
    {
        int M = 37, N = 29, K = 300;
        float *At = malloc(sizeof(float) * K * M), *B = malloc(sizeof(float) * K * N);
        float *C = malloc(sizeof(float) * M * N), *R = malloc(sizeof(float) * M * N);
        fill(At, (size_t)K * M, 1); fill(B, (size_t)K * N, 1); fill(C, (size_t)M * N, 1);
        memcpy(R, C, sizeof(float) * M * N);
        moe_tgemm_ex(C, N, At, 1, M, B, N, M, N, K, 1);
        moe_tgemm_ex_ref(R, N, At, 1, M, B, N, M, N, K, 1);
        double err = 0;
        for (int i = 0; i < M * N; i++) err = fmax(err, fabs((double)C[i] - R[i]));
        CHECK(err < 1e-4 * sqrt((double)K), "transposed-A gemm: max error %g", err);
        free(At); free(B); free(C); free(R);
    }
    /* the vectorised SwiGLU against libm */
    {
        size_t n = 1000;
        float *g = malloc(4 * n), *u = malloc(4 * n), *da = malloc(4 * n), *a1 = malloc(4 * n), *a2 = malloc(4 * n);
        float *g1 = malloc(4 * n), *u1 = malloc(4 * n), *g2 = malloc(4 * n), *u2 = malloc(4 * n);
        fill(g, n, 30); fill(u, n, 2); fill(da, n, 1);
        moe_swiglu_act_fwd_ref(a1, g, u, n);
        moe_swiglu_act_fwd(a2, g, u, n);
        moe_swiglu_act_bwd_ref(g1, u1, da, g, u, n);
        moe_swiglu_act_bwd(g2, u2, da, g, u, n);
        double e = 0;
        for (size_t i = 0; i < n; i++) {
            e = fmax(e, fabs((double)a1[i] - a2[i]) / (fabs(a1[i]) + 1e-3));
            e = fmax(e, fabs((double)g1[i] - g2[i]) / (fabs(g1[i]) + 1e-3));
            e = fmax(e, fabs((double)u1[i] - u2[i]) / (fabs(u1[i]) + 1e-3));
        }
        CHECK(e < 1e-5, "vectorised SwiGLU differs from libm by %g (relative)", e);
        free(g); free(u); free(da); free(a1); free(a2); free(g1); free(u1); free(g2); free(u2);
    }
}

/* ---- single ops ------------------------------------------------------------------------------- */

typedef struct op_ctx {
    int kind, rows, n, B, T, H, KV, hd;
    float *x, *w, *y, *r, *g, *u, *q, *k, *v, *att, *cs, *sn, *tmp;
    int32_t *tgt;
} op_ctx;

static double op_loss(void *p) {
    op_ctx *c = p;
    size_t ny = 0;
    switch (c->kind) {
    case 0: moe_rmsnorm_fwd(c->y, c->tmp, c->x, c->w, c->rows, c->n, 1e-6); ny = (size_t)c->rows * c->n; break;
    case 1: memcpy(c->y, c->x, sizeof(float) * c->rows * c->H * c->hd);
            moe_rope_fwd(c->y, c->cs, c->sn, c->rows, c->T, c->H, c->hd); ny = (size_t)c->rows * c->H * c->hd; break;
    case 2: moe_attn_fwd_ref(c->y, c->att, c->q, c->k, c->v, c->B, c->T, c->H, c->KV, c->hd, 0.3f);
            ny = (size_t)c->B * c->T * c->H * c->hd; break;
    case 3: moe_swiglu_act_fwd(c->y, c->g, c->u, (size_t)c->n); ny = (size_t)c->n; break;
    case 4: { static double l[64]; return moe_xent_fwd(c->y, l, c->x, c->tgt, c->rows, c->n); }
    }
    double L = 0;
    for (size_t i = 0; i < ny; i++) L += (double)c->r[i] * c->y[i];
    return L;
}

static void test_ops(void) {
    op_ctx c = {0};
    enum { BIG = 4096 };
    float *buf[16];
    for (int i = 0; i < 16; i++) { buf[i] = malloc(sizeof(float) * BIG); fill(buf[i], BIG, 1); }
    c.x = buf[0]; c.w = buf[1]; c.y = buf[2]; c.r = buf[3]; c.g = buf[4]; c.u = buf[5]; c.q = buf[6]; c.k = buf[7];
    c.v = buf[8]; c.att = buf[9]; c.cs = buf[10]; c.sn = buf[11]; c.tmp = buf[12];
    float *d1 = buf[13], *d2 = buf[14], *d3 = buf[15];
    /* rmsnorm */
    c.kind = 0; c.rows = 5; c.n = 12;
    memset(d2, 0, sizeof(float) * c.n);
    op_loss(&c);
    moe_rmsnorm_bwd(d1, 0, d2, c.r, c.x, c.w, c.tmp, c.rows, c.n);
    fd_check("rmsnorm dx", c.x, d1, (size_t)c.rows * c.n, op_loss, &c, NULL, 1e-2, 60);
    fd_check("rmsnorm dw", c.w, d2, (size_t)c.n, op_loss, &c, NULL, 1e-2, 60);
    /* rope */
    c.kind = 1; c.rows = 6; c.T = 3; c.H = 2; c.hd = 8;
    moe_rope_table(c.cs, c.sn, c.T, c.hd, 10000);
    memcpy(d1, c.r, sizeof(float) * c.rows * c.H * c.hd);
    moe_rope_bwd(d1, c.cs, c.sn, c.rows, c.T, c.H, c.hd);
    fd_check("rope dx", c.x, d1, (size_t)c.rows * c.H * c.hd, op_loss, &c, NULL, 1e-2, 60);
    /* attention: plain loops vs finite differences, then the product version vs the plain loops */
    c.kind = 2; c.B = 2; c.T = 5; c.H = 4; c.KV = 2; c.hd = 6;
    size_t nq = (size_t)c.B * c.T * c.H * c.hd, nk = (size_t)c.B * c.T * c.KV * c.hd;
    op_loss(&c);
    moe_attn_bwd_ref(d1, d2, d3, c.r, c.q, c.k, c.v, c.att, c.B, c.T, c.H, c.KV, c.hd, 0.3f);
    fd_check("attention dq", c.q, d1, nq, op_loss, &c, NULL, 1e-2, 60);
    fd_check("attention dk", c.k, d2, nk, op_loss, &c, NULL, 1e-2, 60);
    fd_check("attention dv", c.v, d3, nk, op_loss, &c, NULL, 1e-2, 60);
    {
        float *o2 = malloc(sizeof(float) * BIG), *a2 = malloc(sizeof(float) * BIG), *e1 = malloc(sizeof(float) * BIG);
        float *e2 = malloc(sizeof(float) * BIG), *e3 = malloc(sizeof(float) * BIG);
        op_loss(&c);   /* c.y and c.att at the unperturbed point */
        moe_attn_fwd(o2, a2, c.q, c.k, c.v, c.B, c.T, c.H, c.KV, c.hd, 0.3f);
        moe_attn_bwd(e1, e2, e3, c.r, c.q, c.k, c.v, a2, c.B, c.T, c.H, c.KV, c.hd, 0.3f);
        double eo = 0, eg = 0;
        for (size_t i = 0; i < nq; i++) eo = fmax(eo, fabs((double)o2[i] - c.y[i]));
        for (size_t i = 0; i < nq; i++) eg = fmax(eg, fabs((double)e1[i] - d1[i]));
        for (size_t i = 0; i < nk; i++) eg = fmax(eg, fmax(fabs((double)e2[i] - d2[i]), fabs((double)e3[i] - d3[i])));
        CHECK(eo < 1e-5 && eg < 1e-5, "product attention differs from the loops: forward %g, backward %g", eo, eg);
        free(o2); free(a2); free(e1); free(e2); free(e3);
    }
    {   /* several causal row blocks, a ragged last one: products against the loops */
        int B = 2, T = 70, H = 4, KV = 2, hd = 8;
        size_t nq2 = (size_t)B * T * H * hd, nk2 = (size_t)B * T * KV * hd, na = (size_t)B * H * T * T;
        float *q = malloc(4 * nq2), *k = malloc(4 * nk2), *v = malloc(4 * nk2), *go = malloc(4 * nq2);
        float *o1 = malloc(4 * nq2), *o2 = malloc(4 * nq2), *a1 = malloc(4 * na), *a2 = malloc(4 * na);
        float *q1 = malloc(4 * nq2), *q2 = malloc(4 * nq2), *k1 = malloc(4 * nk2), *k2 = malloc(4 * nk2);
        float *v1 = malloc(4 * nk2), *v2 = malloc(4 * nk2);
        fill(q, nq2, 1); fill(k, nk2, 1); fill(v, nk2, 1); fill(go, nq2, 1);
        moe_attn_fwd_ref(o1, a1, q, k, v, B, T, H, KV, hd, 0.35f);
        moe_attn_fwd(o2, a2, q, k, v, B, T, H, KV, hd, 0.35f);
        moe_attn_bwd_ref(q1, k1, v1, go, q, k, v, a1, B, T, H, KV, hd, 0.35f);
        moe_attn_bwd(q2, k2, v2, go, q, k, v, a2, B, T, H, KV, hd, 0.35f);
        double eo = 0, ea = 0, eg = 0;
        for (size_t i = 0; i < nq2; i++) eo = fmax(eo, fabs((double)o1[i] - o2[i]));
        for (size_t i = 0; i < na; i++) ea = fmax(ea, fabs((double)a1[i] - a2[i]));
        for (size_t i = 0; i < nq2; i++) eg = fmax(eg, fabs((double)q1[i] - q2[i]));
        for (size_t i = 0; i < nk2; i++) eg = fmax(eg, fmax(fabs((double)k1[i] - k2[i]), fabs((double)v1[i] - v2[i])));
        CHECK(eo < 1e-5 && ea < 1e-5 && eg < 1e-4, "blocked attention (T=70) differs from the loops: output %g, "
              "probabilities %g, gradients %g", eo, ea, eg);
        free(q); free(k); free(v); free(go); free(o1); free(o2); free(a1); free(a2);
        free(q1); free(q2); free(k1); free(k2); free(v1); free(v2);
    }
    /* swiglu */
    c.kind = 3; c.n = 40;
    moe_swiglu_act_bwd(d1, d2, c.r, c.g, c.u, (size_t)c.n);
    fd_check("swiglu dg", c.g, d1, (size_t)c.n, op_loss, &c, NULL, 1e-2, 60);
    fd_check("swiglu du", c.u, d2, (size_t)c.n, op_loss, &c, NULL, 1e-2, 60);
    /* cross-entropy */
    int32_t tgt[7] = {3, 0, 9, 9, 1, 4, 2};
    c.kind = 4; c.rows = 7; c.n = 10; c.tgt = tgt;
    op_loss(&c);
    moe_xent_bwd(d1, c.y, tgt, c.rows, c.n, 1.0f / c.rows);
    fd_check("cross-entropy dlogits", c.x, d1, (size_t)c.rows * c.n, op_loss, &c, NULL, 1e-2, 70);
    for (int i = 0; i < 16; i++) free(buf[i]);
}

/* ---- routers and losses ------------------------------------------------------------------------ */

typedef struct rt_ctx {
    moe_router r;
    moe_route_in in;
    moe_assign a;
    float *logits, *cw, *cp;      /* random weights of the loss: per (token, expert) and per prob */
    int n, E, nl;
    int32_t tok[64];
    uint64_t rng;
} rt_ctx;

static double rt_loss(void *p) {
    rt_ctx *c = p;
    uint64_t rng = c->rng;
    c->in.rng = &rng;
    if (moe_router_assign(&c->r, &c->in, &c->a)) return NAN;
    double L = 0;
    if (c->r.ops->kind == MOE_ROUTE_SOFT) {
        for (int i = 0; i < c->n * c->nl; i++) L += (double)c->cw[i] * c->a.dispatch[i] + (double)c->cp[i] * c->a.combine[i];
        return L;
    }
    for (int i = 0; i < c->a.n; i++) L += (double)c->cw[c->a.tok[i] * c->E + c->a.exp[i]] * c->a.w[i];
    for (int i = 0; i < c->n * c->E; i++) L += (double)c->cp[i] * c->a.probs[i];
    return L;
}

static uint64_t rt_sig(void *p) {
    rt_ctx *c = p;
    uint64_t h = (uint64_t)c->a.n;
    for (int i = 0; i < c->a.n; i++) h += moe_hash64(((uint64_t)c->a.tok[i] << 20) ^ (uint64_t)c->a.exp[i]);
    return h;
}

static void test_router(const char *name, int E, int k, int n, int seq_len, int slots, int rank) {
    rt_ctx c;
    memset(&c, 0, sizeof c);
    c.r.ops = moe_router_find(name);
    CHECK(c.r.ops != NULL, "router %s is not registered", name);
    if (!c.r.ops || !c.r.ops->backward) return;
    c.r.p = (moe_router_params){.n_experts = E, .top_k = k, .d_model = 8, .norm_topk_prob = 1, .routed_scaling = 1.5,
                                .n_group = 1, .topk_group = 1, .capacity_factor = 1.0, .top_p = 0.6, .slots = slots,
                                .rank = rank, .seed = 3};
    float bias[64];
    fill(bias, 64, 0.1f);
    c.r.score_bias = bias;
    c.n = n;
    c.E = E;
    c.nl = moe_router_n_logits(&c.r);
    c.logits = malloc(sizeof(float) * n * c.nl);
    c.cw = malloc(sizeof(float) * n * c.nl);
    c.cp = malloc(sizeof(float) * n * c.nl);
    float *dl = malloc(sizeof(float) * n * c.nl), *dw = malloc(sizeof(float) * n * c.nl);
    fill(c.logits, (size_t)n * c.nl, 2);
    fill(c.cw, (size_t)n * c.nl, 1);
    fill(c.cp, (size_t)n * c.nl, 1);
    random_tokens(c.tok, n, 256);
    c.rng = 42;
    c.in = (moe_route_in){c.logits, n, seq_len, c.tok, NULL, 0, 1, &c.rng};
    moe_assign_init(&c.a, n, E, c.nl);
    rt_loss(&c);
    float *dp = malloc(sizeof(float) * n * c.nl);
    if (c.r.ops->kind == MOE_ROUTE_SOFT) {
        c.r.ops->backward(&c.r, &c.in, &c.a, c.cw, c.cp, dl);
    } else {
        for (int i = 0; i < c.a.n; i++) dw[i] = c.cw[c.a.tok[i] * E + c.a.exp[i]];
        memcpy(dp, c.cp, sizeof(float) * n * E);
        c.r.ops->backward(&c.r, &c.in, &c.a, dw, dp, dl);
    }
    char label[96];
    snprintf(label, sizeof label, "router %s dlogits", name);
    fd_check(label, c.logits, dl, (size_t)n * c.nl, rt_loss, &c, rt_sig, 1e-2, 200);
    moe_assign_free(&c.a);
    free(c.logits); free(c.cw); free(c.cp); free(dl); free(dw); free(dp);
}

typedef struct loss_ctx {
    moe_assign a;
    float *logits;
    int kind, T, k;
} loss_ctx;

static double loss_value(void *p) {
    loss_ctx *c = p;
    static float sink[4096];
    memset(sink, 0, sizeof sink);
    if (c->kind == 0) return moe_loss_balance(&c->a, 0.7, sink);
    if (c->kind == 1) return moe_loss_seq_balance(&c->a, c->T, c->k, 0.7, sink);
    return moe_loss_z(c->logits, c->a.n_tokens, c->a.n_experts, 0.7, sink);
}

static void test_losses(void) {
    loss_ctx c;
    int n = 12, E = 5, k = 2;
    memset(&c, 0, sizeof c);
    moe_assign_init(&c.a, n, E, E);
    c.logits = malloc(sizeof(float) * n * E);
    fill(c.logits, (size_t)n * E, 2);
    for (int t = 0; t < n; t++) {
        float *p = c.a.probs + t * E;
        for (int e = 0; e < E; e++) p[e] = 0.05f + (float)urand();   /* unnormalised, like sigmoid scores */
        for (int j = 0; j < k; j++) {
            c.a.tok[c.a.n] = t;
            c.a.exp[c.a.n] = (t * 3 + j * 2) % E;
            c.a.w[c.a.n++] = 1;
        }
    }
    c.T = 4; c.k = k;
    float *g = calloc((size_t)n * E, sizeof(float));
    const char *names[] = {"Switch balance loss dprobs", "DeepSeek sequence balance loss dprobs", "router z-loss dlogits"};
    for (int kind = 0; kind < 3; kind++) {
        c.kind = kind;
        memset(g, 0, sizeof(float) * n * E);
        if (kind == 0) moe_loss_balance(&c.a, 0.7, g);
        if (kind == 1) moe_loss_seq_balance(&c.a, c.T, c.k, 0.7, g);
        if (kind == 2) moe_loss_z(c.logits, n, E, 0.7, g);
        fd_check(names[kind], kind == 2 ? c.logits : c.a.probs, g, (size_t)n * E, loss_value, &c, NULL, 1e-2, 60);
    }
    free(g);
    free(c.logits);
    moe_assign_free(&c.a);
}

/* ---- the whole model ---------------------------------------------------------------------------- */

typedef struct model_ctx {
    moe_tmodel *m;
    int32_t x[512], y[512];
    uint64_t rng0;
} model_ctx;

static double model_loss(void *p) {
    model_ctx *c = p;
    double loss;
    c->m->rng = c->rng0;
    if (moe_tmodel_forward(c->m, c->x, c->y, 1, &loss)) return NAN;
    return loss + c->m->aux;
}

static uint64_t model_sig(void *p) {
    model_ctx *c = p;
    uint64_t h = 1;
    for (int l = 0; l < c->m->cfg.n_layers; l++) {
        const moe_assign *a = &c->m->act[l].moe.as;
        if (!c->m->act[l].moe.N) continue;
        for (int i = 0; i < a->n; i++) h += moe_hash64(((uint64_t)l << 40) ^ ((uint64_t)a->tok[i] << 20) ^ (uint64_t)a->exp[i]);
    }
    return h;   /* a sum: the order of a token's experts is not a decision */
}

/* moe_only: check the router, two experts, the shared expert and the embedding (which every upstream
 * gradient reaches); the rest of the model is the same for every router and checked by the first
 * configurations. */
static void test_model(const char *label, moe_tconfig *cfg, int moe_only) {
    if (moe_tconfig_finish(cfg)) { CHECK(0, "%s: config: %s", label, moe_last_error()); return; }
    /* the scalar path sums products in double and calls libm: ten times less rounding noise in the
     * loss than the AVX2 kernels, which the other tests hold to this path */
    moe_simd_force(MOE_SIMD_SCALAR);
    model_ctx c;
    if (moe_tmodel_new(cfg, cfg->batch, &c.m)) { CHECK(0, "%s: %s", label, moe_last_error()); return; }
    moe_tparams *p = c.m->p;
    moe_tparams_init(p, 11);
    perturb(p, 12);
    /* decisive routers: larger gate weights keep most perturbations away from a change of choice */
    for (int i = 0; i < p->n; i++)
        if (strstr(p->t[i].name, ".gate.weight"))
            for (size_t j = 0; j < p->t[i].numel; j++) p->val[p->t[i].offset + j] *= 4;
    random_tokens(c.x, c.m->N, cfg->vocab);
    random_tokens(c.y, c.m->N, cfg->vocab);
    c.rng0 = 77;
    memset(p->grad, 0, sizeof(float) * p->total);
    model_loss(&c);
    moe_tmodel_backward(c.m);
    for (int i = 0; i < p->n; i++) {
        const moe_tparam *t = &p->t[i];
        if (!t->trainable) continue;
        if (moe_only && !strstr(t->name, "layers.1.mlp") && !strstr(t->name, "embed")) continue;
        if (moe_only && (strstr(t->name, "experts.2.") || strstr(t->name, "experts.3."))) continue;
        char name[200];
        snprintf(name, sizeof name, "%s %s", label, t->name);
        /* the zoo checks fewer tensors, so it can afford more coordinates (sparsemax's support and the
         * capacity routers change often enough to need them) */
        /* under the sanitizers (ten times slower) a few coordinates suffice: they look for memory errors */
        int coords = getenv("MOE_TEST_SANITIZED") ? 3 : moe_only ? 16 : 10;
        fd_check(name, p->val + t->offset, p->grad + t->offset, t->numel, model_loss, &c, model_sig, 3e-2, coords);
    }
    moe_tmodel_free(c.m);
    moe_simd_force(moe_simd_detect());
}

int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    if (!only || !strcmp(only, "gemm")) test_gemm();
    if (!only || !strcmp(only, "ops")) test_ops();
    if (!only || !strcmp(only, "losses")) test_losses();
    if (!only || !strcmp(only, "routers")) {
        test_router("softmax_topk", 6, 2, 10, 5, 0, 0);
        test_router("deepseek_v3", 6, 2, 10, 5, 0, 0);
        test_router("switch", 4, 1, 12, 12, 0, 0);
        test_router("switch", 4, 2, 12, 12, 0, 0);
        test_router("expert_choice", 4, 2, 12, 12, 0, 0);
        test_router("base", 4, 1, 12, 12, 0, 0);
        test_router("soft", 3, 1, 12, 6, 2, 0);
        test_router("top_p", 6, 1, 10, 10, 0, 0);
        test_router("sparsemax", 6, 1, 10, 10, 0, 0);
        test_router("aoe", 4, 2, 10, 10, 0, 3);
    }
    if (!only || !strcmp(only, "model")) {
        moe_tconfig c;
        tiny_config(&c, "softmax_topk");
        c.balance_loss = 0.1; c.z_loss = 0.01; c.norm_topk = 0;
        test_model("topk_nonorm", &c, 0);
        tiny_config(&c, "softmax_topk");
        c.qk_norm = 0; c.n_dense_layers = 0; c.n_shared = 0; c.norm_topk = 1;   /* Mixtral always renormalises */
        test_model("mixtral", &c, 0);
        tiny_config(&c, "deepseek_v3");
        c.seq_balance_loss = 0.1; c.routed_scaling = 2.0;
        test_model("deepseek_v3", &c, 0);
        static const char *zoo[] = {"switch", "expert_choice", "base", "soft", "hash", "thor", "top_p", "sparsemax", "aoe"};
        for (size_t i = 0; i < sizeof zoo / sizeof *zoo; i++) {
            tiny_config(&c, zoo[i]);
            c.balance_loss = 0.05; c.z_loss = 0.01; c.capacity_factor = 1.0; c.slots = 2; c.aoe_rank = 4;
            if (!strcmp(zoo[i], "switch")) c.top_k = 1;
            test_model(zoo[i], &c, 1);
        }
    }
    if (!g_fail) printf("all gradient checks passed\n");
    return g_fail;
}
