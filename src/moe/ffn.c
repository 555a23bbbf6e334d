/* ffn.c - the gated FFN (see ffn.h): three products, optional biases, one elementwise activation. */
#include "moe/ffn.h"
#include "core/matmul.h"
#include "core/ops.h"
#include <math.h>

void moe_ffn_act_apply(const moe_ffn_act *act, float *g, const float *u, size_t n) {
    switch (act->kind) {
    case MOE_ACT_SWIGLU_CLAMP: {
        float a = act->alpha, lim = act->limit;
        for (size_t i = 0; i < n; i++) {
            float x = g[i] < lim ? g[i] : lim;                   /* torch's clamp(max=limit) */
            float y = u[i] < -lim ? -lim : u[i] > lim ? lim : u[i];
            g[i] = (y + 1.0f) * (x / (1.0f + expf(-a * x)));
        }
        break;
    }
    default:
        moe_silu_mul(g, u, n);
    }
}

void moe_ffn_add_bias(float *y, size_t ld, int n, const float *b, int o0, int o1) {
    for (int t = 0; t < n; t++) {
        float *r = y + (size_t)t * ld;
        for (int o = o0; o < o1; o++) r[o] += b[o];
    }
}

void moe_swiglu_forward(const moe_ffn_weights *w, const float *x, int n, float *out, float *h_gate, float *h_up) {
    int d = (int)w->up.shape[1], ff = (int)w->gate.shape[0], dout = (int)w->down.shape[0];
    moe_matmul(h_gate, x, n, w->gate.dtype, w->gate.data, ff, d);
    moe_matmul(h_up, x, n, w->up.dtype, w->up.data, ff, d);
    if (w->gate_bias) moe_ffn_add_bias(h_gate, (size_t)ff, n, w->gate_bias, 0, ff);
    if (w->up_bias) moe_ffn_add_bias(h_up, (size_t)ff, n, w->up_bias, 0, ff);
    moe_ffn_act_apply(&w->act, h_gate, h_up, (size_t)n * ff);
    moe_matmul(out, h_gate, n, w->down.dtype, w->down.data, dout, ff);
    if (w->down_bias) moe_ffn_add_bias(out, (size_t)dout, n, w->down_bias, 0, dout);
}
