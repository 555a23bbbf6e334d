/* ffn.c - SwiGLU: three products and an elementwise silu(g) * u. */
#include "moe/ffn.h"
#include "core/matmul.h"
#include "core/ops.h"

void moe_swiglu_forward(const moe_ffn_weights *w, const float *x, int n, float *out, float *h_gate, float *h_up) {
    int d = (int)w->gate.shape[1], ff = (int)w->gate.shape[0];
    moe_matmul(h_gate, x, n, w->gate.dtype, w->gate.data, ff, d);
    moe_matmul(h_up, x, n, w->up.dtype, w->up.data, ff, d);
    moe_silu_mul(h_gate, h_up, (size_t)n * ff);
    moe_matmul(out, h_gate, n, w->down.dtype, w->down.data, d, ff);
}
