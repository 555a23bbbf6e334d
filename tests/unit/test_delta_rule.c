/* test_delta_rule.c - the gated delta rule (core/delta_rule.h):
 *  1. the SIMD step of every level the CPU runs, and of the AVX-512 logic on the 16-lane emulation,
 *     against the scalar oracle, over several tokens (the state carries errors forward), for head
 *     sizes with tails of every length;
 *  2. the chunked form (prefill) against the recurrent oracle run token by token: outputs and final
 *     state, from a zero and a random initial state, for sequences shorter than, equal to and spanning
 *     several chunks, at every SIMD level (it is built on moe_matmul / moe_dot / moe_axpy).
 * Inputs are drawn fresh: q and k L2-normalised (as the layer feeds them), v of mixed sign, log decays
 * from strong to none, beta in (0, 1). Tolerance: 1e-5 of the largest magnitude of the compared rows
 * (f32 sums in another order, compounded over up to 130 tokens of state).
 * Seeds: fixed ones plus a fresh one per run (printed; MOE_TEST_SEED=N replays it). */
#include "core/cpu.h"
#include "core/delta_rule.h"
#include "unit/emu16_kernels.h"
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include "core/delta_rule_tmpl.h"
static const moe_delta_kernels emu16_delta = DELTA_TABLE;
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "unit/testrand.h"

static int g_fail, g_checks;

static float runif(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 40) * (1.0 / 16777216.0)); }

static void unit_rows(float *x, int n, int d) {
    for (int t = 0; t < n; t++) {
        double ss = 0;
        for (int i = 0; i < d; i++) {
            x[t * d + i] = runif(-1, 1);
            ss += (double)x[t * d + i] * x[t * d + i];
        }
        for (int i = 0; i < d; i++) x[t * d + i] = (float)(x[t * d + i] / sqrt(ss + 1e-6));
    }
}

typedef struct inputs { int n, dk, dv; float *q, *k, *v, *g, *beta, *st0; } inputs;

static inputs draw(int n, int dk, int dv, int random_state) {
    inputs in = {n, dk, dv, malloc(sizeof(float) * n * dk), malloc(sizeof(float) * n * dk), malloc(sizeof(float) * n * dv),
                 malloc(sizeof(float) * n), malloc(sizeof(float) * n), malloc(sizeof(float) * dv * dk)};
    unit_rows(in.q, n, dk);
    for (int i = 0; i < n * dk; i++) in.q[i] /= sqrtf((float)dk);
    unit_rows(in.k, n, dk);
    for (int i = 0; i < n * dv; i++) in.v[i] = runif(-2, 2);
    int regime = rint_(0, 2);   /* strong decay, mild decay, almost none */
    for (int t = 0; t < n; t++) {
        in.g[t] = regime == 0 ? runif(-3, 0) : regime == 1 ? runif(-0.3f, 0) : runif(-1e-3f, 0);
        in.beta[t] = runif(0.01f, 0.99f);
    }
    for (int i = 0; i < dv * dk; i++) in.st0[i] = random_state ? runif(-1, 1) : 0;
    return in;
}

static void release(inputs *in) { free(in->q); free(in->k); free(in->v); free(in->g); free(in->beta); free(in->st0); }

/* max |a - b| <= tol * max(|b|, 1e-3) */
static void compare(const char *what, const char *level, const inputs *in, const float *a, const float *b, size_t len,
                    double tol) {
    double m = 1e-3, e = 0;
    size_t at = 0;
    for (size_t i = 0; i < len; i++) {
        m = fmax(m, fabs(b[i]));
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= e)) { e = d; at = i; }
    }
    g_checks++;
    if (!(e <= tol * m)) {
        printf("FAIL %s %s n=%d dk=%d dv=%d: [%zu] = %.9g, oracle %.9g (max |oracle| %.3g)\n", level, what, in->n, in->dk,
               in->dv, at, a[at], b[at], m);
        g_fail++;
    }
}

/* The oracle: the scalar step, token after token. */
static void recurrent(const inputs *in, float *st, float *out) {
    memcpy(st, in->st0, sizeof(float) * in->dv * in->dk);
    for (int t = 0; t < in->n; t++)
        moe_delta_scalar.step(st, in->dk, in->dv, in->q + t * in->dk, in->k + t * in->dk, in->v + t * in->dv,
                              expf(in->g[t]), in->beta[t], out + t * in->dv);
}

static void check_step(const moe_delta_kernels *kt, const char *level, int dk, int dv) {
    inputs in = draw(rint_(1, 6), dk, dv, rint_(0, 1));
    float *st = malloc(sizeof(float) * dv * dk), *ref_st = malloc(sizeof(float) * dv * dk);
    float *out = malloc(sizeof(float) * in.n * dv), *ref = malloc(sizeof(float) * in.n * dv);
    recurrent(&in, ref_st, ref);
    memcpy(st, in.st0, sizeof(float) * dv * dk);
    for (int t = 0; t < in.n; t++)
        kt->step(st, dk, dv, in.q + t * dk, in.k + t * dk, in.v + t * dv, expf(in.g[t]), in.beta[t], out + t * dv);
    compare("step out", level, &in, out, ref, (size_t)in.n * dv, 1e-5);
    compare("step state", level, &in, st, ref_st, (size_t)dv * dk, 1e-5);
    free(st); free(ref_st); free(out); free(ref);
    release(&in);
}

static void check_chunked(const char *level, int n, int dk, int dv, int chunk) {
    inputs in = draw(n, dk, dv, rint_(0, 1));
    float *st = malloc(sizeof(float) * dv * dk), *ref_st = malloc(sizeof(float) * dv * dk);
    float *out = malloc(sizeof(float) * n * dv), *ref = malloc(sizeof(float) * n * dv);
    float *scratch = malloc(sizeof(float) * moe_delta_chunk_scratch(chunk, dk, dv));
    recurrent(&in, ref_st, ref);
    memcpy(st, in.st0, sizeof(float) * dv * dk);
    moe_delta_chunked(st, dk, dv, n, in.q, in.k, in.v, in.g, in.beta, out, chunk, scratch);
    char what[64];
    snprintf(what, sizeof what, "chunked(%d) out", chunk);
    compare(what, level, &in, out, ref, (size_t)n * dv, 1e-5);
    snprintf(what, sizeof what, "chunked(%d) state", chunk);
    compare(what, level, &in, st, ref_st, (size_t)dv * dk, 1e-5);
    free(st); free(ref_st); free(out); free(ref); free(scratch);
    release(&in);
}

int main(void) {
    const char *env = getenv("MOE_TEST_SEED");
    uint64_t fresh = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    const uint64_t seeds[] = {5, 91, fresh};
    int top = moe_simd_detect();
    printf("detected SIMD level %d; fresh seed %llu (MOE_TEST_SEED=%llu replays it)\n", top, (unsigned long long)fresh,
           (unsigned long long)fresh);
    static const char *names[] = {"scalar", "avx2", "avx512"};
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        g_rng = seeds[s];
        int before = g_fail;
        for (int rep = 0; rep < 40; rep++) {
            int dk = rint_(1, 70), dv = rint_(1, 40);
            if (top >= MOE_SIMD_AVX2) check_step(&moe_delta_avx2, "avx2", dk, dv);
            if (top >= MOE_SIMD_AVX512) check_step(&moe_delta_avx512, "avx512", dk, dv);
            if (top >= MOE_SIMD_AVX2) check_step(&emu16_delta, "emu16", dk, dv);
        }
        for (int lvl = MOE_SIMD_SCALAR; lvl <= top; lvl++) {
            moe_simd_force((moe_simd)lvl);
            static const int lens[] = {1, 2, 7, 16, 63, 64, 65, 130};
            for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
                check_chunked(names[lvl], lens[i], rint_(1, 40), rint_(1, 40), 64);
                check_chunked(names[lvl], lens[i], rint_(1, 40), rint_(1, 40), rint_(1, 20));
            }
            check_chunked(names[lvl], 100, 128, 128, 64);   /* Qwen3-Next's head size */
        }
        moe_simd_force((moe_simd)top);
        if (g_fail > before) printf("  (seed %llu)\n", (unsigned long long)seeds[s]);
    }
    printf("%d checks, %d failures\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
