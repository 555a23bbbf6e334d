/* tmodel.h - the training model: parameters (tparams.h), saved activations, forward and backward.
 *   x = embed(tokens)
 *   per layer: h = rmsnorm(x); q,k,v = h Wq^T, h Wk^T, h Wv^T; [q,k per-head rmsnorm]; rope(q,k);
 *              o = causal_softmax(q k^T / sqrt(hd)) v; x += o Wo^T;
 *              h2 = rmsnorm(x); x += FFN(h2)   (dense SwiGLU or the MoE block)
 *   logits = rmsnorm(x) Wlm^T; loss = mean cross-entropy + the routers' balancing losses.
 * A batch is B sequences of T tokens (N = B*T rows); every op keeps what its backward needs. */
#ifndef MOE_TRAIN_TMODEL_H
#define MOE_TRAIN_TMODEL_H
#include "train/tmoe.h"
#include "train/tparams.h"

typedef struct moe_tact {        /* one layer's saved activations */
    float *x;                    /* [N][d] the residual stream entering the layer */
    float *h1, *r1;              /* attention rmsnorm out [N][d], rstd [N] */
    float *qr, *kr, *qrs, *krs;  /* q, k before their norms [N][H*hd], [N][KV*hd]; rstd [N*H], [N*KV] */
    float *q, *k, *v;            /* after norm and rope */
    float *att, *o;              /* [B][H][T][T], [N][H*hd] */
    float *xm;                   /* [N][d] stream after attention */
    float *h2, *r2;              /* ffn rmsnorm */
    float *g, *u;                /* dense FFN [N][d_ff] */
    moe_tmoe moe;                /* MoE block state */
} moe_tact;

typedef struct moe_tmodel {
    moe_tconfig cfg;
    moe_tparams *p;
    int B, T, N;
    moe_tact *act;               /* [n_layers] */
    float *xf, *hf, *rf;         /* final stream [N][d], its norm, rstd */
    float *probs;                /* [N][V] */
    double *losses;              /* [N] per-token cross-entropy */
    float *cs, *sn;              /* rope tables [T][hd/2] */
    /* backward scratch */
    float *dx, *dh, *dq, *dk, *dv, *dtmp, *scratch;
    size_t scratch_n;
    int32_t *tokens, *targets;   /* [N] of the last forward */
    double ce, aux;              /* last forward: mean cross-entropy, sum of balancing losses */
    uint64_t rng;                /* training randomness of the routers (THOR) */
} moe_tmodel;

/* A model for batches of B sequences of cfg->seq_len tokens. Parameters are allocated, not initialised. */
moe_status moe_tmodel_new(const moe_tconfig *cfg, int B, moe_tmodel **out);
void moe_tmodel_free(moe_tmodel *m);
/* Forward over tokens [B*T]; with targets, returns the mean cross-entropy in *loss (balancing losses in
 * m->aux). training: routers in training mode (THOR draws, BASE balances). Logits are left in
 * m->probs (softmaxed when targets are given). */
moe_status moe_tmodel_forward(moe_tmodel *m, const int32_t *tokens, const int32_t *targets, int training, double *loss);
/* Gradients of (cross-entropy + balancing losses) of the last forward, added to m->p->grad. */
void moe_tmodel_backward(moe_tmodel *m);
/* Logits [N][V] without the loss (for comparison with the inference engine). */
moe_status moe_tmodel_logits(moe_tmodel *m, const int32_t *tokens, float *logits);
#endif
