/* ops.c - scalar reference implementations (vectorised by the compiler where it can). */
#include "core/ops.h"
#include <math.h>

void moe_rmsnorm(float *y, const float *x, const float *w, int rows, int n, double eps) {
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

void moe_silu_mul(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void moe_softmax(float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (int i = 0; i < n; i++) s += (x[i] = expf(x[i] - m));
    float inv = 1.0f / s;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void moe_add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
