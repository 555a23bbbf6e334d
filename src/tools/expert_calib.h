/* expert_calib.h - what pruning, merging and `moe superexperts` measure about each routed expert on
 * calibration text.
 *
 * The model runs its ordinary forward pass; two public hooks observe it. The hidden-state hook gives
 * each MoE layer's input x (the router's input), the routing hook the layer's decision on it. When a
 * measure needs an expert's output f_e(x) for the tokens routed to e (REAP, super experts), it is
 * computed from x and the expert's weights from the model's expert store with the same SwiGLU kernel
 * the layer uses, so nothing inside the layer is touched. Per MoE layer and expert, over the
 * calibration tokens t and with S(t) the experts token t is routed to, g_e(t) their combine weights
 * and p_e(t) the router's scores:
 *   freq[e]     |{t : e in S(t)}|                               (frequency of selection)
 *   wsum[e]     sum over those t of g_e(t)
 *   psum[e]     sum over all t of p_e(t)
 *   task[e]     sum over t with e in S(t) and q_e(t) >= r of p_e(t), where q_e(t) = p_e(t) / sum over
 *               S(t) of p (the relative share among the chosen experts, PreMoe's task-conditioned
 *               expected selection score; r = task_threshold)
 *   reap[e]     sum over t with e in S(t) of g_e(t) * ||f_e(x_t)||_2   (REAP = reap / freq)
 *   max_abs[e]  largest |f_e(x_t)[c]| over routed t and channels c, with its channel and token
 *               (f_e's output is its down projection's output: super experts)
 * Optionally the inputs x_t and scores p(t) of up to keep_tokens tokens spread evenly over the text
 * are kept per layer (merging computes expert activations on them). */
#ifndef MOE_TOOLS_EXPERT_CALIB_H
#define MOE_TOOLS_EXPERT_CALIB_H
#include <stdint.h>
#include "model/model.h"

typedef struct moe_calib_options {
    int ctx;                  /* tokens per window */
    int outputs;              /* compute expert outputs (REAP, max_abs) */
    int keep_tokens;          /* inputs and scores kept per layer (0: none) */
    double task_threshold;    /* r of task[] */
    void (*progress)(void *user, int done, int total);
    void *user;
} moe_calib_options;

typedef struct moe_calib_layer {
    int layer;                /* transformer layer */
    double *freq, *wsum, *psum, *task, *reap;   /* [E] */
    float *max_abs;           /* [E] */
    int *max_chan;            /* [E] channel of max_abs (-1: never routed) */
    int *max_token;           /* [E] calibration token index of max_abs */
    float *x;                 /* [n_kept][d] */
    float *scores;            /* [n_kept][E] */
    int n_kept;
} moe_calib_layer;

typedef struct moe_calib {
    int n_moe, E, d, n_tokens;
    moe_calib_layer *layers;  /* [n_moe], ascending layer */
} moe_calib;

moe_status moe_calib_run(moe_model *m, const int32_t *ids, int n, const moe_calib_options *o, moe_calib *out);
void moe_calib_free(moe_calib *c);

/* f_e(x) for n rows x[n][d] of expert e of MoE layer l (transformer index): out[n][d]; the SwiGLU's
 * inner activations silu(gate x) * (up x) go to h[n][d_expert] when h is not NULL. */
moe_status moe_expert_apply(moe_model *m, int layer, int e, const float *x, int n, float *out, float *h);
#endif
