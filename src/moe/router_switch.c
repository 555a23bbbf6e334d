/* router_switch.c - Switch Transformer routing (Fedus, Zoph, Shazeer 2021, "Switch Transformers").
 *   p = softmax(logits); each token picks its top-k experts (k = 1 in the paper), weight w = p_e
 *   (not renormalised, so the router learns through it); every expert takes at most
 *   C = ceil(capacity_factor * tokens * k / experts) tokens, first come first served in batch order
 *   (all first choices before any second choice, as GShard does); a token over capacity is dropped by
 *   that expert and, if no expert keeps it, skips the layer through the residual connection.
 * Backward: dp_e = dw for kept assignments, then the softmax backward. Capacity makes the output of a
 * token depend on the tokens before it in the batch: at inference the batch is the prefill chunk. */
#include "moe/router.h"
#include "core/error.h"
#include <math.h>
#include <string.h>

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts, k = r->p.top_k;
    double cf = r->p.capacity_factor > 0 ? r->p.capacity_factor : 1.0;
    int cap = (int)ceil(cf * n * k / E);
    int *fill = a->itmp, *choice = a->itmp + E;   /* [E], [n*k] */
    memset(fill, 0, sizeof(int) * (size_t)E);
    for (int t = 0; t < n; t++) {
        moe_softmax_row(in->logits + (size_t)t * E, a->probs + (size_t)t * E, E);
        moe_topk(a->probs + (size_t)t * E, E, k, choice + (size_t)t * k);
    }
    a->n = 0;
    for (int j = 0; j < k; j++)
        for (int t = 0; t < n; t++) {
            int e = choice[(size_t)t * k + j];
            if (fill[e] >= cap) continue;
            fill[e]++;
            a->tok[a->n] = t;
            a->exp[a->n] = e;
            a->w[a->n++] = a->probs[(size_t)t * E + e] * (float)r->p.routed_scaling;
        }
    moe_assign_sort_by_token(a);
    return MOE_OK;
}

const moe_router_ops moe_router_switch = {
    .name = "switch", .summary = "softmax top-k with an expert capacity; overflow skips the layer",
    .route = route, .backward = moe_router_softmax_weight_bwd, .kind = MOE_ROUTE_SPARSE, .trainable = 1,
    .default_capacity = 1.25};
