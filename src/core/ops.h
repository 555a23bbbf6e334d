/* ops.h - elementwise and row-wise operations of the forward pass, written to match PyTorch's float32
 * results (same formulas, same order where it matters). */
#ifndef MOE_CORE_OPS_H
#define MOE_CORE_OPS_H
#include <stddef.h>

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i] over rows of length n (y may alias x). */
void moe_rmsnorm(float *y, const float *x, const float *w, int rows, int n, double eps);
/* g[i] = silu(g[i]) * u[i] */
void moe_silu_mul(float *g, const float *u, size_t n);
/* In-place softmax of x[0..n). */
void moe_softmax(float *x, int n);
void moe_add(float *y, const float *x, size_t n);
#endif
