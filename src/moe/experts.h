/* experts.h - the expert executor: runs a MoE layer's routed experts on a routing decision grouped by
 * expert (router.h: moe_assign after moe_assign_group) and combines their outputs. Every router's
 * decision goes through it: token choice with k experts per token, any number per token (expert
 * choice, capacity, top-p, sparsemax, BASE, transforms of a decision), and Soft MoE, whose rows are
 * slots filled by the dense dispatch matrix and read back through the dense combine matrix.
 *
 * The work of a wave of experts is one OpenMP region: gather rows, gate and up products as tasks of
 * (expert, block of output rows), activation, down products as tasks again, combine. The combine
 * gives each thread a range of output columns and adds the rows in ascending expert order (the order
 * transformers uses), so results do not depend on the thread count. Experts from a store with a
 * bounded number of slots (moe_store.max_pinned) run in waves of at most that many, in ascending
 * expert order; the combine accumulates wave after wave, so the sums keep the same order and the
 * result equals running them all at once.
 *
 * The expert FFN is a parameter of the expert weights (moe_ffn_weights: activation kind, optional
 * biases) and of the router (expert_gate_factored: the gate projection reads the router's per-expert
 * outputs, as Autonomy-of-Experts does). A layer with weight_on_input (Llama 4) runs each expert on its
 * weight times the token's input and adds the output unscaled. */
#ifndef MOE_MOE_EXPERTS_H
#define MOE_MOE_EXPERTS_H
#include "moe/moe_layer.h"

typedef struct moe_experts_call {
    const float *x;           /* [n][d_model] the layer's input */
    int n;
    const moe_assign *a;      /* the decision, grouped (moe_assign_group) */
    const float *logits;      /* [n][n_logits] router outputs: the gate input of factored experts, else unused */
    int e0, e1;               /* run experts [e0, e1) only (a share of the experts, as expert parallelism
                               * would give one rank); 0 and n_experts for all */
    const int *x_row;         /* [n] or NULL: token t's input is row x_row[t] of x (a compact buffer of
                               * the rows some rank received, moe/ep.h); -1 for tokens this call never reads */
    float *rows_out;          /* [a->rows][d_model] or NULL: keep each run row's unweighted expert output
                               * at its grouped row index and do not combine (out is then unused) */
    const unsigned char *run; /* [n_experts] or NULL: run only the experts marked (and in [e0, e1)) */
} moe_experts_call;

/* out[n][d_model] = sum over the rows of experts in [e0, e1) of weight * expert(row input); tokens
 * without such a row get 0. Acquires and releases every expert it runs from L->store. */
moe_status moe_experts_forward(const moe_layer *L, const moe_experts_call *c, float *out, moe_arena *scratch);

/* The combine alone, for rows computed elsewhere (expert parallelism): out rows [t0, t1) = sum over the
 * decision's rows p of those tokens, in ascending p (ascending expert), of row_w[p] * Y[ypos[p]]. The
 * same arithmetic in the same order as moe_experts_forward's combine, so the bits are the same. */
void moe_experts_combine(const moe_assign *a, const float *Y, const int *ypos, int t0, int t1, int d, float *out);
#endif
