/* lexi.h - a per-layer number of experts chosen from the weights alone (LExI, Chitty-Venkata et al.
 * 2025, "LExI: Layer-Adaptive Active Experts for Efficient MoE Model Inference"). */
#ifndef MOE_MODEL_LEXI_H
#define MOE_MODEL_LEXI_H
#include "moe.h"

/* k[l] for every MoE layer l of m (0 for the others) with an average of avg_k experts per token over
 * the MoE layers (rounded to a whole total), chosen to disturb the layers' outputs least. */
moe_status moe_lexi_layer_k(moe_model *m, double avg_k, int *k);
#endif
