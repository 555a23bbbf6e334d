/* router_thor.c - stochastic experts (THOR: Zuo et al. 2022, "Taming Sparsely Activated Transformer
 * with Stochastic Experts"): in training every token goes to k experts drawn uniformly at random,
 * weight 1/k each, with no router to learn. At inference the draw is replaced by a fixed
 * pseudo-random one, hash(seed, layer, position) mod E, so results are reproducible while each
 * expert still sees the same kind of inputs it was trained on. (THOR's consistency regulariser
 * between two draws is not implemented.) No gate matrix, nothing to differentiate. */
#include "moe/router.h"
#include "core/error.h"
#include <string.h>

static int n_logits(const moe_router_params *p) { (void)p; return 0; }

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts, k = r->p.top_k;
    memset(a->probs, 0, sizeof(float) * (size_t)n * E);
    a->n = 0;
    for (int t = 0; t < n; t++) {
        int first = a->n, pos = in->pos ? in->pos[t] : (in->seq_len > 0 ? t % in->seq_len : t);
        for (int j = 0; j < k; j++) {
            uint64_t h = in->training && in->rng ? moe_rng_next(in->rng)
                                                 : moe_hash64(r->p.seed ^ ((uint64_t)in->layer << 48) ^ ((uint64_t)pos << 8) ^ (uint64_t)j);
            moe_assign_add_distinct(a, first, t, h, E, k);
        }
    }
    return MOE_OK;
}

const moe_router_ops moe_router_thor = {
    .name = "thor", .summary = "random experts in training (THOR), a fixed draw at inference",
    .route = route, .kind = MOE_ROUTE_SPARSE, .n_logits = n_logits, .trainable = 1};
