/* deltanet.h - gated DeltaNet linear attention, the "linear_attention" layers of Qwen3-Next, as
 * transformers' Qwen3NextGatedDeltaNet computes it (its torch paths, not the fla / causal-conv1d kernels):
 *   [q k v z] = h W_qkvz, [b a] = h W_ba       (grouped per key head)
 *   [q k v] = silu(causal depthwise conv1d over time of [q k v])   (kernel 4, no bias)
 *   beta = sigmoid(b), g = -exp(A_log) softplus(a + dt_bias)      (per value head)
 *   o = gated delta rule (core/delta_rule.h) with q, k L2-normalised and q scaled by dk^-1/2; each value
 *       head reads the key head it belongs to (Hv / Hk value heads per key head)
 *   out = (RMSNorm(o) * w * silu(z)) W_out     (per value head)
 * The session keeps, per layer, the convolution's last kernel-1 inputs and the delta-rule state, so
 * decoding one token at a time continues exactly where a prefill stopped. Like transformers, a batch of
 * several tokens (or the first token) uses the chunked form and a single later token the recurrent step. */
#ifndef MOE_MODEL_DELTANET_H
#define MOE_MODEL_DELTANET_H
#include "model/attention.h"

/* Floats of session state per layer: convolution inputs and delta-rule state. */
size_t moe_deltanet_conv_floats(const moe_config *c);
size_t moe_deltanet_state_floats(const moe_config *c);

/* out[n][hidden] for the rows of h; seqs partition the rows into sequences (see moe_attention_forward_seqs),
 * each with its own state: a sequence starting at position 0 resets its own state, and each continues
 * only its own. */
moe_status moe_deltanet_forward(const moe_model *m, int layer, const float *h, int n, const moe_attn_seq *seqs,
                                int n_seqs, float *out, moe_arena *scratch);
#endif
