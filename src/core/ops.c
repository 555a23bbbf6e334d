/* ops.c - the scalar reference implementations (the oracles of ops_avx2.c / ops_avx512.c) and the
 * dispatch of the moe_* entry points to the table of the SIMD level in use. */
#include "core/ops.h"
#include <math.h>

static void rmsnorm_scalar(float *y, const float *x, const float *w, int rows, int n, double eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        /* torch: variance = x.pow(2).mean(-1); x * rsqrt(variance + eps); weight * x */
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float var = (float)(ss / n);
        float inv = 1.0f / sqrtf(var + (float)eps);
        for (int i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

static void silu_mul_scalar(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* The sum is kept in double: a float running sum over long rows (attention over thousands of
 * positions) drifts by ~sqrt(n) ulp, and the double sum makes the result independent of the order
 * in which the SIMD versions add. */
static void softmax_scalar(float *x, int n) {
    if (n <= 0) return;
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0;
    for (int i = 0; i < n; i++) s += (x[i] = expf(x[i] - m));
    float inv = 1.0f / (float)s;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static float dot_scalar(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_scalar(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

const moe_ops_kernels moe_ops_scalar = {rmsnorm_scalar, silu_mul_scalar, softmax_scalar, dot_scalar, axpy_scalar};

const moe_ops_kernels *moe_ops_kernels_for(moe_simd s) {
    switch (s) {
    case MOE_SIMD_AVX512: return &moe_ops_avx512;
    case MOE_SIMD_AVX2: return &moe_ops_avx2;
    default: return &moe_ops_scalar;
    }
}

static const moe_ops_kernels *ops(void) { return moe_ops_kernels_for(moe_simd_level()); }

void moe_rmsnorm(float *y, const float *x, const float *w, int rows, int n, double eps) {
    ops()->rmsnorm(y, x, w, rows, n, eps);
}
void moe_silu_mul(float *g, const float *u, size_t n) { ops()->silu_mul(g, u, n); }
void moe_softmax(float *x, int n) { ops()->softmax(x, n); }
float moe_dot(const float *a, const float *b, int n) { return ops()->dot(a, b, n); }
void moe_axpy(float *y, float a, const float *x, int n) { ops()->axpy(y, a, x, n); }

void moe_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Rare in the models we load (phimoe) and a small share of the work: one scalar loop, with the mean
 * and variance accumulated in double so that the order of the sums does not matter. */
void moe_layernorm(float *y, const float *x, const float *w, const float *b, int rows, int n, double eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        double mean = 0, var = 0;
        for (int i = 0; i < n; i++) mean += xr[i];
        mean /= n;
        for (int i = 0; i < n; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        float inv = (float)(1.0 / sqrt(var / n + eps)), mu = (float)mean;
        for (int i = 0; i < n; i++) yr[i] = (xr[i] - mu) * inv * w[i] + (b ? b[i] : 0.0f);
    }
}
