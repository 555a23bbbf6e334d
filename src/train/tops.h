/* tops.h - the operations of the training model, each forward beside its backward, as plain loops with
 * the shapes in comments (after llm.c). N = B*T tokens, d = model width. Backward functions
 * accumulate (+=) into parameter gradients; into input gradients they overwrite unless a name says
 * otherwise. Loops are parallelised with OpenMP only over independent outputs, so results are the
 * same for any thread count. The products live in tgemm.h. */
#ifndef MOE_TRAIN_TOPS_H
#define MOE_TRAIN_TOPS_H
#include <stddef.h>
#include <stdint.h>

/* x[N][d] = E[tok[t]] ; dE[tok[t]] += dx[t] */
void moe_embed_fwd(float *x, const float *E, const int32_t *tok, int N, int d);
void moe_embed_bwd(float *dE, const float *dx, const int32_t *tok, int N, int d);

/* y[rows][n] = w * x / sqrt(mean(x^2) + eps); rstd[rows] saved. The same arithmetic as the inference
 * engine's moe_rmsnorm (sum of squares in double, the rest in float). */
void moe_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int rows, int n, double eps);
/* dx = (overwrite, or += if accumulate) ; dw += */
void moe_rmsnorm_bwd(float *dx, int accumulate, float *dw, const float *dy, const float *x, const float *w,
                     const float *rstd, int rows, int n);

/* RoPE on half pairs (i, i + hd/2) of every head: v[N][heads][hd], position of token t = t % T.
 * cs, sn: [T][hd/2] from moe_rope_table. The backward rotates by the opposite angle. */
void moe_rope_table(float *cs, float *sn, int T, int hd, double theta);
void moe_rope_fwd(float *v, const float *cs, const float *sn, int N, int T, int heads, int hd);
void moe_rope_bwd(float *dv, const float *cs, const float *sn, int N, int T, int heads, int hd);

/* Causal attention with grouped key/value heads.
 * q [N][H][hd], k, v [N][KV][hd] -> o [N][H][hd]; att [B][H][T][T] (softmax rows, saved). */
void moe_attn_fwd(float *o, float *att, const float *q, const float *k, const float *v, int B, int T, int H, int KV,
                  int hd, float scale);
/* dq, dk, dv overwritten. */
void moe_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                  const float *att, int B, int T, int H, int KV, int hd, float scale);
/* The same as plain loops over (sequence, head, position): the oracle of the product-based versions. */
void moe_attn_fwd_ref(float *o, float *att, const float *q, const float *k, const float *v, int B, int T, int H, int KV,
                      int hd, float scale);
void moe_attn_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                      const float *v, const float *att, int B, int T, int H, int KV, int hd, float scale);

/* a[n] = silu(g) * u ;  dg, du from da (dg and du may alias g and u). AVX2 where available; the _ref
 * versions (libm expf) are the oracles. */
void moe_swiglu_act_fwd(float *a, const float *g, const float *u, size_t n);
void moe_swiglu_act_bwd(float *dg, float *du, const float *da, const float *g, const float *u, size_t n);
void moe_swiglu_act_fwd_ref(float *a, const float *g, const float *u, size_t n);
void moe_swiglu_act_bwd_ref(float *dg, float *du, const float *da, const float *g, const float *u, size_t n);

/* Cross-entropy over rows of logits [N][V] against targets; probs may alias logits. Returns the mean
 * loss; losses[N] receives each row's. */
double moe_xent_fwd(float *probs, double *losses, const float *logits, const int32_t *targets, int N, int V);
/* dlogits[N][V] = (probs - onehot) * scale (scale = 1/N for the mean); may alias probs. */
void moe_xent_bwd(float *dlogits, const float *probs, const int32_t *targets, int N, int V, float scale);
#endif
