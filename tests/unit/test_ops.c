/* test_ops.c - the SIMD row-wise operations (rmsnorm, silu_mul, softmax, dot, axpy) of every level
 * the CPU runs, and of the AVX-512 logic on the 16-lane emulation ("emu16"), against the scalar
 * oracles in ops.c, on fresh random inputs of many lengths (tails of every size) and on special
 * values (zeros, huge and tiny magnitudes, exp underflow and overflow, +-inf, NaN).
 * Tolerances: 1e-6 relative for rmsnorm, silu_mul, softmax and axpy (the engine must stay within
 * 1e-4 of PyTorch); dot differs only in summation order: 2e-6 * sum |a b|. A NaN in the oracle's
 * output must be NaN here too, an infinity or a zero must match exactly.
 * Seeds: fixed ones plus a fresh one per run (printed; MOE_TEST_SEED=N replays it). */
#include "core/cpu.h"
#include "core/ops.h"
#include "unit/emu16_kernels.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "unit/testrand.h"

static int g_fail, g_checks;
static const char *g_level;

static float runif(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 40) * (1.0 / 16777216.0)); }

/* got vs want within rel*|want| + abs; NaN must match NaN, inf and zero exactly (sign of zero aside). */
static int close_to(float got, float want, double rel, double abs_) {
    if (isnan(want)) return isnan(got);
    if (isinf(want) || want == 0) return got == want || (want == 0 && fabs(got) <= abs_);
    return fabs((double)got - want) <= rel * fabs(want) + abs_;
}

static int report(const char *op, int n, int i, float got, float want) {
    printf("FAIL %s %s n=%d: [%d] = %.9g, scalar %.9g\n", g_level, op, n, i, got, want);
    g_fail++;
    return 1;
}

/* Fill with one of several distributions so that tails and special cases all get exercised. */
static void fill(float *x, int n, int kind) {
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case 0: x[i] = runif(-4, 4); break;
        case 1: x[i] = ldexpf(runif(-1, 1), rint_(-20, 20)); break;                /* mixed magnitudes */
        case 2: x[i] = runif(-120, 120); break;                                   /* exp over/underflow */
        default: {
            int r = rint_(0, 9);
            x[i] = r == 0 ? INFINITY : r == 1 ? -INFINITY : r == 2 ? NAN : r == 3 ? 0.0f : runif(-100, 100);
        }
        }
    }
}

static void check_rmsnorm(const moe_ops_kernels *k, int n, int kind) {
    int rows = rint_(1, 3);
    float *x = malloc(sizeof(float) * rows * n), *w = malloc(sizeof(float) * n);
    float *y = malloc(sizeof(float) * rows * n), *yr = malloc(sizeof(float) * rows * n), *xa = malloc(sizeof(float) * rows * n);
    fill(x, rows * n, kind > 2 ? 1 : kind);
    if (kind == 3) memset(x, 0, sizeof(float) * n);   /* an all-zero row: 1/sqrt(eps) scaling */
    fill(w, n, 0);
    double eps = 1e-6;
    k->rmsnorm(y, x, w, rows, n, eps);
    moe_ops_scalar.rmsnorm(yr, x, w, rows, n, eps);
    memcpy(xa, x, sizeof(float) * rows * n);
    k->rmsnorm(xa, xa, w, rows, n, eps);           /* in place, as the engine calls it */
    for (int i = 0; i < rows * n; i++, g_checks++)
        if (!close_to(y[i], yr[i], 1e-6, 1e-37) || !close_to(xa[i], yr[i], 1e-6, 1e-37)) {
            report("rmsnorm", n, i, y[i], yr[i]);
            break;
        }
    free(x); free(w); free(y); free(yr); free(xa);
}

static void check_silu(const moe_ops_kernels *k, int n, int kind) {
    float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n), *gr = malloc(sizeof(float) * n);
    fill(g, n, kind);
    fill(u, n, kind == 3 ? 0 : kind);
    memcpy(gr, g, sizeof(float) * n);
    k->silu_mul(g, u, (size_t)n);
    moe_ops_scalar.silu_mul(gr, u, (size_t)n);
    for (int i = 0; i < n; i++, g_checks++)
        if (!close_to(g[i], gr[i], 1e-6, 1e-37)) {
            report("silu_mul", n, i, g[i], gr[i]);
            break;
        }
    free(g); free(u); free(gr);
}

static void check_softmax(const moe_ops_kernels *k, int n, int kind) {
    float *x = malloc(sizeof(float) * n), *xr = malloc(sizeof(float) * n);
    fill(x, n, kind);
    if (kind == 3 && n > 2) {   /* masked positions as attention produces them, without NaN */
        for (int i = 0; i < n; i++) x[i] = i % 3 == 0 ? -INFINITY : runif(-30, 30);
    }
    memcpy(xr, x, sizeof(float) * n);
    k->softmax(x, n);
    moe_ops_scalar.softmax(xr, n);
    for (int i = 0; i < n; i++, g_checks++)
        if (!close_to(x[i], xr[i], 1e-6, 1e-44)) {
            report("softmax", n, i, x[i], xr[i]);
            break;
        }
    free(x); free(xr);
}

static void check_dot_axpy(const moe_ops_kernels *k, int n, int kind) {
    float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    float *y = malloc(sizeof(float) * n), *yr = malloc(sizeof(float) * n);
    int kk = kind > 1 ? 0 : kind;
    fill(a, n, kk);
    fill(b, n, kk);
    fill(y, n, kk);
    memcpy(yr, y, sizeof(float) * n);
    double mag = 0;
    for (int i = 0; i < n; i++) mag += fabs((double)a[i] * b[i]);
    float d = k->dot(a, b, n), dr = moe_ops_scalar.dot(a, b, n);
    g_checks++;
    if (!(fabs((double)d - dr) <= 2e-6 * mag + 1e-37)) report("dot", n, 0, d, dr);
    float s = runif(-2, 2);
    k->axpy(y, s, a, n);
    moe_ops_scalar.axpy(yr, s, a, n);
    for (int i = 0; i < n; i++, g_checks++) {
        double scale = fabs((double)yr[i]) + fabs((double)s * a[i]);
        if (!(fabs((double)y[i] - yr[i]) <= 1e-6 * scale + 1e-37)) {
            report("axpy", n, i, y[i], yr[i]);
            break;
        }
    }
    free(a); free(b); free(y); free(yr);
}

static void check_table(const moe_ops_kernels *k, const char *name) {
    g_level = name;
    int before = g_fail;
    for (int n = 1; n <= 80; n++)
        for (int kind = 0; kind < 4; kind++) {
            check_rmsnorm(k, n, kind);
            check_silu(k, n, kind);
            check_softmax(k, n, kind);
            check_dot_axpy(k, n, kind);
        }
    static const int big[] = {127, 128, 129, 255, 1000, 2048, 4097, 14336};
    for (size_t b = 0; b < sizeof big / sizeof *big; b++)
        for (int kind = 0; kind < 4; kind++) {
            check_rmsnorm(k, big[b], kind);
            check_silu(k, big[b], kind);
            check_softmax(k, big[b], kind);
            check_dot_axpy(k, big[b], kind);
        }
    if (g_fail > before) printf("  (level %s)\n", name);
}

/* The moe_* entry points follow moe_simd_force: at each level they equal that level's table. */
static void check_dispatch(int lvl) {
    moe_simd_force((moe_simd)lvl);
    const moe_ops_kernels *k = moe_ops_kernels_for((moe_simd)lvl);
    float x[37], a[37], b[37];
    fill(x, 37, 0);
    memcpy(a, x, sizeof x);
    memcpy(b, x, sizeof x);
    moe_softmax(a, 37);
    k->softmax(b, 37);
    g_checks++;
    if (memcmp(a, b, sizeof a) != 0) {
        printf("FAIL moe_softmax at level %d does not use that level's kernel\n", lvl);
        g_fail++;
    }
    moe_simd_force(moe_simd_detect());
}

int main(void) {
    const char *env = getenv("MOE_TEST_SEED");
    uint64_t fresh = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    const uint64_t seeds[] = {3, 77, fresh};
    int top = moe_simd_detect();
    printf("detected SIMD level %d; fresh seed %llu (MOE_TEST_SEED=%llu replays it)\n", top, (unsigned long long)fresh,
           (unsigned long long)fresh);
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        g_rng = seeds[s];
        int before = g_fail;
        if (top >= MOE_SIMD_AVX2) check_table(&moe_ops_avx2, "avx2");
        if (top >= MOE_SIMD_AVX512) check_table(&moe_ops_avx512, "avx512");
        if (top >= MOE_SIMD_AVX2) check_table(&emu16_ops, "emu16");
        for (int lvl = MOE_SIMD_SCALAR; lvl <= top; lvl++) check_dispatch(lvl);
        if (g_fail > before) printf("  (seed %llu)\n", (unsigned long long)seeds[s]);
    }
    printf("%d checks, %d failures\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
