/* router_hash.c - Hash layers (Roller et al. 2021, "Hash Layers For Large Sparse Models"): the expert
 * is a fixed function of the input token id, e = hash(seed, token) mod E, with no learned router and
 * no balancing (the hash spreads the vocabulary; the load follows token frequencies). With top_k > 1
 * each token gets k distinct experts from k hashes, weight 1/k each. There is no gate matrix and
 * nothing to differentiate. Needs the token ids of the batch. */
#include "moe/router.h"
#include "core/error.h"
#include <string.h>

static int n_logits(const moe_router_params *p) { (void)p; return 0; }

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts, k = r->p.top_k;
    if (!in->token_ids) return moe_fail(MOE_EINTERNAL, "hash router: token ids are required");
    memset(a->probs, 0, sizeof(float) * (size_t)n * E);
    a->n = 0;
    for (int t = 0; t < n; t++) {
        int first = a->n;
        for (int j = 0; j < k; j++) {
            uint64_t h = moe_hash64(r->p.seed ^ ((uint64_t)(uint32_t)in->token_ids[t] << 8) ^ (uint64_t)j);
            moe_assign_add_distinct(a, first, t, h, E, k);
        }
    }
    return MOE_OK;
}

const moe_router_ops moe_router_hash = {
    .name = "hash", .summary = "fixed hash of the token id, no learned router",
    .route = route, .kind = MOE_ROUTE_SPARSE, .n_logits = n_logits, .needs_token_ids = 1, .trainable = 1};
