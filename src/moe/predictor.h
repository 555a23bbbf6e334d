/* predictor.h - the cross-layer expert predictor that the disk store prefetches by.
 * Before MoE layer N runs, its experts are guessed twice from the previous MoE layer P:
 *   early: from P's FFN input x_P = rmsnorm(h) * g_P, rescaled channel-wise by g_N / g_P (the residual
 *          stream changes little from layer to layer, so this is close to what N's router will see);
 *          its reads overlap P's experts and N's attention;
 *   late:  from the residual stream after P, normalised with g_N; it lacks only N's attention.
 * A guess maps its input to N's router logits with a linear map and applies N's router's selection.
 * The map is N's own gate (the cross-layer gate of Fate and Pre-gated MoE, without training), or a
 * fitted predictor's: weight [E][d] and bias [E] per guess, least-squares fitted to N's router logits
 * on calibration text (src/tools/predictor_fit.c, `moe fit-predictor`).
 *
 * A predictor file is safetensors with, for every MoE layer N that follows another MoE layer, exactly
 * the F32 tensors layers.N.early.weight [E][d], layers.N.early.bias [E], layers.N.late.weight,
 * layers.N.late.bias, and nothing else; __metadata__ "moe_predictor" describes the fit (informative). */
#ifndef MOE_MOE_PREDICTOR_H
#define MOE_MOE_PREDICTOR_H
#include "io/safetensors.h"

typedef enum { MOE_GUESS_EARLY = 0, MOE_GUESS_LATE = 1 } moe_guess;

#define MOE_PREDICTOR_META_KEY "moe_predictor"

/* out[n][d] = the input of guess g of layer N (gain g_next) from x, P's FFN input (early) or the
 * residual after P (late); g_prev is P's gain (early only). */
void moe_predictor_input(moe_guess g, const float *x, int n, int d, const float *g_prev, const float *g_next, float eps,
                         float *out);

/* logits[n][E] = x[n][d] . w^T + b: a fitted guess's router logits (w [E][d], b [E]). */
void moe_predictor_logits(const float *x, int n, int d, const float *w, const float *b, int E, float *logits);

/* Bind a parsed predictor file to a model shape: is_moe[l] says which layers are MoE. On success
 * w[2*l + g] and b[2*l + g] point at layer l's tensors for guess g (NULL for layers without a
 * predecessor MoE layer). Any missing, extra, misshapen, non-F32 or misaligned tensor is an error
 * naming the file and the tensor. */
moe_status moe_predictor_bind(const moe_st_file *f, int n_layers, const unsigned char *is_moe, int n_experts, int d_model,
                              const float **w, const float **b);
#endif
