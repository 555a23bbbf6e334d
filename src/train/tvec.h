/* tvec.h - the elementwise kernels of training that call exp: SwiGLU's activation forward and
 * backward, and a vector exp for softmax rows. AVX2 versions (tvec_avx2.c) use a Cephes-style expf
 * (range reduction by ln 2, degree-5 polynomial, within 2 ulp of expf over the float range); the
 * scalar versions in tops.c call libm and are their oracles (tests/unit/test_train_grad.c). */
#ifndef MOE_TRAIN_TVEC_H
#define MOE_TRAIN_TVEC_H
#include <stddef.h>

/* y[i] = exp(x[i] - shift) */
void moe_vexp_shift_avx2(float *y, const float *x, float shift, size_t n);
/* a = silu(g) * u */
void moe_swiglu_act_fwd_avx2(float *a, const float *g, const float *u, size_t n);
/* dg, du from da (may alias g, u) */
void moe_swiglu_act_bwd_avx2(float *dg, float *du, const float *da, const float *g, const float *u, size_t n);
#endif
