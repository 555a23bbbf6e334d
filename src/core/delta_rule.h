/* delta_rule.h - the gated delta rule (Gated DeltaNet, Yang, Kautz and Hatamizadeh 2024), the recurrence
 * of Qwen3-Next's linear-attention layers. Per value head, with a state S of dk x dv, for each token
 * (q and k already L2-normalised, q scaled by dk^-1/2, decay = exp(g) in (0, 1], beta in (0, 1)):
 *     S <- decay * S;   S <- S + k (beta (v - S^T k))^T;   o = S^T q
 * The state is stored transposed, st[dv][dk]: each value coordinate's row is contiguous along dk, so
 * one token reads and writes the state once, row by row, with SIMD along dk.
 *
 * Two forms compute the same thing:
 *  - recurrent, token by token (decode): the `step` kernel, one table per SIMD level like ops.h, whose
 *    scalar version (the order of transformers' torch_recurrent_gated_delta_rule) is the oracle;
 *  - chunked (prefill), the form of transformers' torch_chunk_gated_delta_rule: within a chunk of L
 *    tokens the L rank-one updates become two unit lower-triangular solves and matrix products against
 *    the state, so that a prefill mirrors the reference's arithmetic. It agrees with the recurrent
 *    oracle to rounding (tests/unit/test_delta_rule.c). */
#ifndef MOE_CORE_DELTA_RULE_H
#define MOE_CORE_DELTA_RULE_H
#include <stddef.h>
#include "core/cpu.h"

typedef struct moe_delta_kernels {
    /* One token of one head: st[dv][dk] updated in place, out[dv] = S^T q. */
    void (*step)(float *st, int dk, int dv, const float *q, const float *k, const float *v, float decay, float beta,
                 float *out);
} moe_delta_kernels;

const moe_delta_kernels *moe_delta_kernels_for(moe_simd s);
extern const moe_delta_kernels moe_delta_scalar;
extern const moe_delta_kernels moe_delta_avx2;
extern const moe_delta_kernels moe_delta_avx512;

/* The step of the current SIMD level. */
void moe_delta_step(float *st, int dk, int dv, const float *q, const float *k, const float *v, float decay,
                    float beta, float *out);

/* Floats of scratch moe_delta_chunked needs for chunks of up to `chunk` tokens. */
size_t moe_delta_chunk_scratch(int chunk, int dk, int dv);

/* n tokens of one head in chunks of `chunk` tokens (transformers uses 64), from the state st[dv][dk]
 * (updated in place). q, k: [n][dk]; v, out: [n][dv]; g (log decay, <= 0) and beta: [n].
 * scratch holds moe_delta_chunk_scratch(chunk, dk, dv) floats. */
void moe_delta_chunked(float *st, int dk, int dv, int n, const float *q, const float *k, const float *v,
                       const float *g, const float *beta, float *out, int chunk, float *scratch);
#endif
