/* ffn.h - the gated feed-forward block used by dense layers, routed experts and shared experts:
 * three products, optional biases, and an activation of the gate and up projections (moe_ffn_act:
 * SwiGLU unless the weights say otherwise). */
#ifndef MOE_MOE_FFN_H
#define MOE_MOE_FFN_H
#include "moe/expert_store.h"

/* out[n][d_model] = down(act(gate x + bg, up x + bu)) + bd. h_gate and h_up are [n][d_ff] scratch. */
void moe_swiglu_forward(const moe_ffn_weights *w, const float *x, int n, float *out, float *h_gate, float *h_up);
/* g[i] = act(g[i], u[i]) for i < n (one row or many). SwiGLU goes through moe_silu_mul (SIMD). */
void moe_ffn_act_apply(const moe_ffn_act *act, float *g, const float *u, size_t n);
/* y[t][o] += b[o] for t < n, o in [o0, o1): the bias of a block of output columns (row stride ld). */
void moe_ffn_add_bias(float *y, size_t ld, int n, const float *b, int o0, int o1);
static inline int moe_ffn_width(const moe_ffn_weights *w) { return (int)w->gate.shape[0]; }
#endif
