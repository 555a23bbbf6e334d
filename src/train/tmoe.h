/* tmoe.h - the MoE block of the training model: forward with saved state, and backward.
 *   logits = h . gate^T -> router (one of src/moe/router_*.c) -> assignments (token, expert, weight)
 *   -> rows grouped by expert -> each expert's SwiGLU over its rows -> out[t] = sum_a w_a y_a
 *   (+ shared experts on every token). Soft MoE instead mixes tokens into slots (dispatch), runs the
 *   experts on the slots and mixes slots back into tokens (combine); Autonomy-of-Experts reuses each
 *   expert's low-rank gate factor from the routing step as the start of its gate projection.
 * Per-token sums run in token order and per-expert products are single-owner, so results do not
 * depend on the number of threads. The balancing losses are computed in the forward (they need only
 * the routing) and their gradients kept for the backward. */
#ifndef MOE_TRAIN_TMOE_H
#define MOE_TRAIN_TMOE_H
#include "moe/router.h"
#include "moe/router_losses.h"
#include "train/tparams.h"

typedef struct moe_tmoe {
    int N, T, d, E, de, ds, nl, rank, S;   /* tokens, seq len, width, experts, expert/shared width, gate rows */
    int soft, aoe;
    moe_router router;
    moe_route_in in;
    moe_assign as;
    float *logits, *d_logits, *d_aux_logits;  /* [N][nl] */
    float *d_probs;                           /* [N][E] the losses' gradient on probs */
    float *d_w;                               /* [cap] gradient of each assignment's weight */
    int *offset;                              /* [E+1] grouped rows per expert */
    int *row_of;                              /* [cap] grouped row of each assignment */
    size_t cap_rows;
    float *xg, *g, *u, *a, *y, *dy, *dx;      /* grouped rows: [rows][d], [rows][de] x3, [rows][d] x3 */
    float *zg, *dzg;                          /* aoe: [rows][rank] gate factor outputs and their gradient */
    float *sg, *su, *sa, *sy;                 /* shared experts: [N][ds] x3, [N][d] */
    float *scratch;                           /* transposes and temporaries */
    size_t scratch_n;
    float *escratch;                          /* per-thread scratch of the expert loop */
    size_t escratch_n;
    double aux;                               /* the balancing losses of the last forward */
    int *load;                                /* [E] */
    moe_route_stats stats;
} moe_tmoe;

moe_status moe_tmoe_init(moe_tmoe *m, const moe_tconfig *c, int N, int layer);
void moe_tmoe_free(moe_tmoe *m);
/* out[N][d] = MoE(h). P: the layer's parameters; bias: DeepSeek score bias or NULL. */
moe_status moe_tmoe_fwd(moe_tmoe *m, const moe_tconfig *c, const moe_tlayer *P, float *bias, const float *h,
                        const int32_t *tokens, int training, uint64_t *rng, float *out);
/* dh[N][d] = dL/dh (overwritten) given dout; parameter gradients into G. */
void moe_tmoe_bwd(moe_tmoe *m, const moe_tconfig *c, const moe_tlayer *P, moe_tlayer *G, const float *h,
                  const float *dout, float *dh);
#endif
