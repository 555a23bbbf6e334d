/* router_soft.c - Soft MoE (Puigcerver et al. 2023, "From Sparse to Soft Mixtures of Experts").
 * Each expert has `slots` slots; the gate holds one column per slot (gate rows = experts * slots,
 * the paper's Phi transposed). Over the tokens of one sequence (a group):
 *   logits L[t][j] = x_t . phi_j
 *   dispatch D = softmax over tokens of each column j   slot input  s_j = sum_t D[t][j] x_t
 *   combine  C = softmax over slots of each row t        output      y_t = sum_j C[t][j] f_e(j)(s_j)
 * Nothing is dropped and every expert processes exactly `slots` inputs per sequence. The MoE block
 * does the mixing products; this file computes D and C and their backward:
 *   dL = C (dC - <dC, C>_row) + D (dD - <dD, D>_column).
 * probs[t][e] = sum of C[t][j] over e's slots (statistics). Soft MoE mixes the tokens of a sequence,
 * future ones included: in a causal language model a token's output sees later tokens, so its
 * training loss is optimistic and it cannot decode one token at a time like the others (at inference
 * the group is the prefill chunk). The paper's l2-normalisation of x and phi is not applied. */
#include "moe/router.h"
#include "core/alloc.h"
#include "core/error.h"
#include <math.h>
#include <string.h>

static int n_logits(const moe_router_params *p) { return p->n_experts * (p->slots > 0 ? p->slots : 1); }

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts, L = n_logits(&r->p), S = L / E;
    int G = in->seq_len > 0 && in->seq_len < n ? in->seq_len : n;
    if (!a->dispatch) {
        a->dispatch = moe_alloc(sizeof(float) * (size_t)n * L);
        a->combine = moe_alloc(sizeof(float) * (size_t)n * L);
        if (!a->dispatch || !a->combine) return moe_fail(MOE_ENOMEM, "soft router: out of memory for %d tokens", n);
    }
    const float *l = in->logits;
    for (int t = 0; t < n; t++) {
        moe_softmax_row(l + (size_t)t * L, a->combine + (size_t)t * L, L);
        for (int e = 0; e < E; e++) {
            float s = 0;
            for (int j = 0; j < S; j++) s += a->combine[(size_t)t * L + e * S + j];
            a->probs[(size_t)t * E + e] = s;
        }
    }
    for (int g0 = 0; g0 < n; g0 += G) {
        int g1 = g0 + G < n ? g0 + G : n;
        for (int j = 0; j < L; j++) {
            float mx = -INFINITY;
            for (int t = g0; t < g1; t++) mx = fmaxf(mx, l[(size_t)t * L + j]);
            double sum = 0;
            for (int t = g0; t < g1; t++) sum += (a->dispatch[(size_t)t * L + j] = expf(l[(size_t)t * L + j] - mx));
            float inv = (float)(1.0 / sum);
            for (int t = g0; t < g1; t++) a->dispatch[(size_t)t * L + j] *= inv;
        }
    }
    a->n = 0;
    return MOE_OK;
}

/* d_w = dL/dD, d_probs = dL/dC, both [n][L]. */
static void backward(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                     const float *d_probs, float *d_logits) {
    int n = in->n, L = n_logits(&r->p);
    int G = in->seq_len > 0 && in->seq_len < n ? in->seq_len : n;
    for (int t = 0; t < n; t++)
        moe_softmax_row_bwd(a->combine + (size_t)t * L, d_probs + (size_t)t * L, d_logits + (size_t)t * L, L);
    for (int g0 = 0; g0 < n; g0 += G) {
        int g1 = g0 + G < n ? g0 + G : n;
        for (int j = 0; j < L; j++) {
            double dot = 0;
            for (int t = g0; t < g1; t++) dot += (double)d_w[(size_t)t * L + j] * a->dispatch[(size_t)t * L + j];
            for (int t = g0; t < g1; t++) {
                size_t i = (size_t)t * L + j;
                d_logits[i] += a->dispatch[i] * (d_w[i] - (float)dot);
            }
        }
    }
}

const moe_router_ops moe_router_soft = {
    .name = "soft", .summary = "Soft MoE: slots take softmax mixtures of tokens, tokens of slots",
    .route = route, .backward = backward, .kind = MOE_ROUTE_SOFT, .n_logits = n_logits, .trainable = 1};
