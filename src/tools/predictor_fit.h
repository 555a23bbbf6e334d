/* predictor_fit.h - fitting the cross-layer expert predictor (the library side of `moe fit-predictor`).
 *
 * For every MoE layer N after the first, and for each of its two guesses (moe/predictor.h: early from
 * the previous MoE layer's FFN input, late from the residual stream after it), a linear map [W | b]
 * from the guess's input u to N's router logits z = x_N . G_N^T is fitted by ridge regression on
 * calibration tokens, shrunk towards the router's own gate (the unfitted predictor):
 *
 *     [W | b] = argmin sum_t |[W | b] [u_t; 1] - z_t|^2 + lambda |[W | b] - [G_N | 0]|^2,
 *     lambda  = ridge * mean diagonal of sum_t [u_t; 1][u_t; 1]^T
 *
 * solved exactly (normal equations, Cholesky in double). This is Pre-gated MoE's idea - a gate that
 * predicts the next layer's choice from an earlier hidden state - fitted in closed form on a frozen
 * model instead of trained into it. The calibration tokens are cut into independent windows of ctx
 * tokens; the last val_fraction of them is held out. With ridge == 0 the strength is chosen per layer
 * and guess among 1e-6 .. 1e-1 and the router's own gate (which the fit must beat to be used) by the
 * experts found on the first half of the held-out tokens; the second half reports the share of each
 * layer's chosen experts that the router-as-predictor and the chosen predictor find. With a fixed
 * ridge, all held-out tokens report.
 *
 * Memory: the normal equations take 2 ((d+1)^2 + (d+1) E) doubles per layer; layers are fitted in as
 * many passes over the calibration tokens as max_memory requires. The candidate maps take
 * 2 * 7 * E * d floats per layer until the file is written. */
#ifndef MOE_TOOLS_PREDICTOR_FIT_H
#define MOE_TOOLS_PREDICTOR_FIT_H
#include "model/model.h"

typedef struct moe_predictor_fit_options {
    int ctx;               /* tokens per window (each window is one sequence) */
    double ridge;          /* relative ridge strength (see above); 0: chosen on held-out tokens */
    double val_fraction;   /* share of the tokens held out for the report (0: none) */
    int64_t max_memory;    /* bytes of normal equations held at once */
    /* called after each window: pass (1-based) of passes, tokens done of total in this pass */
    void (*progress)(void *user, int pass, int passes, int done, int total);
    void *progress_user;
} moe_predictor_fit_options;

typedef struct moe_predictor_fit_layer {
    int layer;             /* the predicted layer N */
    double ridge[2];       /* strength used per guess (0: the router's gate was kept) */
    /* share of N's chosen experts found on the held-out tokens, per token:
     * [0 router gate, 1 fitted][0 early, 1 late, 2 either] */
    double found[2][3];
} moe_predictor_fit_layer;

typedef struct moe_predictor_fit_report {
    int fit_tokens, val_tokens, passes, n_layers;   /* val_tokens: those the report is measured on */
    moe_predictor_fit_layer *layers;   /* [n_layers], malloc'ed (free it) */
    double found[2][3];                /* over all predicted layers */
} moe_predictor_fit_report;

/* Fit on tokens[0..n) and write the predictor to out_path (safetensors, atomically). */
moe_status moe_predictor_fit(moe_model *m, const int32_t *tokens, int n, const moe_predictor_fit_options *o,
                             const char *out_path, moe_predictor_fit_report *rep);
#endif
