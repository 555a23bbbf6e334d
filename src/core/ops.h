/* ops.h - elementwise and row-wise operations of the forward pass, written to match PyTorch's float32
 * results (same formulas, same order where it matters). Each SIMD level provides a table of kernels;
 * the moe_* entry points dispatch on moe_simd_level(). The scalar table is the oracle the SIMD
 * tables are tested against (tests/unit/test_ops.c): they agree to ~1e-7 relative (a vector exp of
 * <= 2 ulp, sums in another order), far inside the 1e-4 that the engine is held to against PyTorch. */
#ifndef MOE_CORE_OPS_H
#define MOE_CORE_OPS_H
#include <stddef.h>
#include "core/cpu.h"

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] over rows of length n (y may alias x). */
void moe_rmsnorm(float *y, const float *x, const float *w, int rows, int n, double eps);
/* y = (x - mean(x)) / sqrt(var(x) + eps) * w + b over rows of length n (biased variance, like
 * torch.nn.LayerNorm; b may be NULL; y may alias x). Scalar only. */
void moe_layernorm(float *y, const float *x, const float *w, const float *b, int rows, int n, double eps);
/* g[i] = silu(g[i]) * u[i] */
void moe_silu_mul(float *g, const float *u, size_t n);
/* In-place softmax of x[0..n) (the sum of the exponentials is accumulated in double). */
void moe_softmax(float *x, int n);
void moe_add(float *y, const float *x, size_t n);
/* sum a[i]*b[i] (attention scores) */
float moe_dot(const float *a, const float *b, int n);
/* y[i] += a * x[i] (attention: weighted sum of values) */
void moe_axpy(float *y, float a, const float *x, int n);

typedef struct moe_ops_kernels {
    void (*rmsnorm)(float *y, const float *x, const float *w, int rows, int n, double eps);
    void (*silu_mul)(float *g, const float *u, size_t n);
    void (*softmax)(float *x, int n);
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);
} moe_ops_kernels;

/* Kernel table of a SIMD level (complete for every level). */
const moe_ops_kernels *moe_ops_kernels_for(moe_simd s);
extern const moe_ops_kernels moe_ops_scalar;
extern const moe_ops_kernels moe_ops_avx2;
extern const moe_ops_kernels moe_ops_avx512;
#endif
