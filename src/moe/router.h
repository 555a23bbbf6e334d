/* router.h - the router interface. A router turns a token's hidden state into a choice of experts and
 * combine weights. Linear routers share the gate projection (logits = x . W_gate^T, in f32) and
 * differ in how they turn logits into choices: that step is the router's `select`. One file per
 * router (router_*.c), one line per router in router_registry.c. */
#ifndef MOE_MOE_ROUTER_H
#define MOE_MOE_ROUTER_H
#include "core/tensor.h"
#include "moe.h"

typedef struct moe_router_params {
    int n_experts, top_k, d_model;
    int norm_topk_prob;       /* renormalise the chosen weights to sum to 1 */
    double routed_scaling;    /* multiply final weights (DeepSeek) */
    int n_group, topk_group;  /* group-limited selection (DeepSeek); n_group <= 1 means off */
    int group_limited;
} moe_router_params;

typedef struct moe_router moe_router;

typedef struct moe_router_ops {
    const char *name;
    const char *summary;
    /* logits [n][E] -> scores [n][E], expert [n][k] (descending score order), weight [n][k]. */
    void (*select)(const moe_router *r, const float *logits, int n, float *scores, int *expert, float *weight);
} moe_router_ops;

struct moe_router {
    const moe_router_ops *ops;
    moe_router_params p;
    moe_tensor gate;          /* [n_experts][d_model] */
    const float *score_bias;  /* [n_experts] added to scores for the choice only (DeepSeek-V3), or NULL */
};

const moe_router_ops *moe_router_find(const char *name);

/* Full routing of n tokens: gate projection then select. logits and scores are [n][E] scratch. */
void moe_router_route(const moe_router *r, const float *x, int n, float *logits, float *scores, int *expert,
                      float *weight);

/* Indices of the k largest values of v[0..n) in descending order; ties go to the lower index. */
void moe_topk(const float *v, int n, int k, int *idx);
#endif
