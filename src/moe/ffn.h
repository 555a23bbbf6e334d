/* ffn.h - the SwiGLU feed-forward block used by dense layers, routed experts and shared experts. */
#ifndef MOE_MOE_FFN_H
#define MOE_MOE_FFN_H
#include "moe/expert_store.h"

/* out[n][d_model] = down(silu(gate x) * up x). h_gate and h_up are [n][d_ff] scratch. */
void moe_swiglu_forward(const moe_ffn_weights *w, const float *x, int n, float *out, float *h_gate, float *h_up);
static inline int moe_ffn_width(const moe_ffn_weights *w) { return (int)w->gate.shape[0]; }
#endif
