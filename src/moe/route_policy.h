/* route_policy.h - dynamic routing and steering at inference as one transform of the routing decision
 * (moe_route_transform, moe_layer.h), the same for every sparse router: no router file knows of it.
 *
 * Applied to a layer's decision in this order (docs/DYNAMIC.md gives the exact rules):
 *   1. selection: disabled experts' logits are set to -inf and the router runs again, with the
 *      layer's own k replaced by --layer-k's where the router honours top_k; --top-p (and --layer-k
 *      for routers that choose their own count) instead ranks the experts by router probability and
 *      weights them as the router's normalisation would (p * scaling, renormalised over the chosen
 *      when the router renormalises); disabled experts are then removed from whatever remains.
 *   2. --skip-threshold: assignments whose combine weight is below W are dropped (each token keeps
 *      its largest one).
 *   3. capacity (Capacity-Aware Inference): at most C = ceil(gamma * assignments / experts) tokens per
 *      expert in the batch; an expert keeps its C largest weights; the overflow is dropped, or
 *      rerouted to the token's next expert by probability that still has room.
 *   4. forced experts are added to every token that lacks them, with the token's largest weight.
 * The policy is read-only while sessions run; counting what was executed is the layer's business. */
#ifndef MOE_MOE_ROUTE_POLICY_H
#define MOE_MOE_ROUTE_POLICY_H
#include "moe/moe_layer.h"

typedef struct moe_route_policy {
    int n_layers, n_experts;          /* transformer layers; router slots per MoE layer */
    double top_p;                     /* (0, 1]; 0: off */
    double skip;                      /* > 0: threshold on combine weights; 0: off */
    double capacity;                  /* gamma > 0; 0: off */
    int reroute;                      /* capacity overflow rerouted instead of dropped */
    int *k;                           /* [n_layers] experts per token; 0: the router's own */
    unsigned char *disabled, *forced; /* [n_layers][n_experts] */
    unsigned char *any_disabled, *any_forced; /* [n_layers] */
} moe_route_policy;

/* A policy with nothing set for a model of n_layers layers and n_experts experts. */
moe_status moe_route_policy_new(int n_layers, int n_experts, moe_route_policy **out);
void moe_route_policy_free(moe_route_policy *p);

/* Parse "L:E,L:E,..." (L a layer index or *) into mask ([n_layers][n_experts]). is_moe[l] says which
 * layers have routed experts. flag names the option in messages (usage errors, one line). */
moe_status moe_route_policy_parse_experts(moe_route_policy *p, const char *flag, const char *spec,
                                          const unsigned char *is_moe, unsigned char *mask);
/* Parse "L:K,..." (L a layer index or *; 1 <= K <= n_experts) into p->k. */
moe_status moe_route_policy_parse_k(moe_route_policy *p, const char *flag, const char *spec,
                                    const unsigned char *is_moe);

/* Whether the policy changes anything at all. */
int moe_route_policy_active(const moe_route_policy *p);
/* Whether a token's decision depends on the other tokens of its batch (capacity). */
int moe_route_policy_batch_dependent(const moe_route_policy *p);

/* The transform (user = the policy). */
moe_status moe_route_policy_apply(void *user, const moe_layer *L, const moe_route_in *in, moe_assign *a);
#endif
