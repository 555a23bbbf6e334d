/* router_sparsemixer.c - SparseMixer routing as Phi-3.5-MoE uses it at inference (Liu et al. 2024,
 * "GRIN: GRadient-INformed MoE"; transformers' phimoe `sparsemixer` with training off). Exactly two
 * experts per token, each weighted by a softmax over the experts whose logit is close to the best one:
 *   1. e1 = argmax l; keep the e with (l_e1 - l_e) / max(|l_e|, l_e1) <= 2 eps, the rest -inf;
 *      w1 = softmax(kept)[e1].
 *   2. the same over l with e1 removed (-inf): e2 = its argmax, threshold l_e2, margins still
 *      measured as (l_e2 - l_e) / max(|l_e|, l_e2); w2 = softmax(kept)[e2].
 * eps is router_jitter_noise. Scores for the hook and statistics: softmax(l). In training the paper
 * samples the experts (Gumbel) and estimates the gradient with Heun's method; that is not
 * implemented, so this router is for inference only (no backward). */
#include "moe/router.h"
#include <math.h>

/* Expert with the largest logit among those not excluded (ties: the lower index). */
static int argmax_except(const float *l, int E, int skip) {
    int best = -1;
    for (int e = 0; e < E; e++)
        if (e != skip && (best < 0 || l[e] > l[best])) best = e;
    return best;
}

/* Weight of expert `sel` in the softmax over the experts within the margin of threshold l[sel],
 * leaving out `skip` (-1: none). The masked logits are -inf, so they add exp(-inf) = 0. */
static float masked_weight(const float *l, int E, int sel, int skip, float eps2) {
    float thr = l[sel], sum = 0;
    for (int e = 0; e < E; e++) {
        if (e == skip) continue;
        float factor = fabsf(l[e]) > thr ? fabsf(l[e]) : thr;
        if ((thr - l[e]) / factor > eps2) continue;   /* NaN (0/0) compares false: kept, as in torch */
        sum += expf(l[e] - thr);
    }
    return 1.0f / sum;   /* exp(l[sel] - thr) = 1 */
}

static void select_sparsemixer(const moe_router *r, const float *logits, int n, float *scores, int *expert,
                               float *weight) {
    int E = r->p.n_experts;
    float eps2 = (float)(2 * r->p.jitter_eps);
    for (int t = 0; t < n; t++) {
        const float *l = logits + (size_t)t * E;
        moe_softmax_row(l, scores + (size_t)t * E, E);
        int e1 = argmax_except(l, E, -1);
        int e2 = E > 1 ? argmax_except(l, E, e1) : e1;
        expert[2 * t] = e1;
        expert[2 * t + 1] = e2;
        weight[2 * t] = masked_weight(l, E, e1, -1, eps2);
        weight[2 * t + 1] = E > 1 ? masked_weight(l, E, e2, e1, eps2) : 0.0f;
    }
}

const moe_router_ops moe_router_sparsemixer = {
    .name = "sparsemixer", .summary = "two experts, each weighted by a softmax over the near-best",
    .select = select_sparsemixer, .own_count = 1, .weights_normalised = 1, .kind = MOE_ROUTE_SPARSE};
