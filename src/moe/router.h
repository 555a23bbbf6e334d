/* router.h - the router interface, shared by inference and training. A router turns a batch of tokens'
 * gate outputs into assignments (token, expert, combine weight) and, for training, maps the gradient
 * of those weights (and of its probabilities, from the balancing losses) back to the gate outputs.
 * Linear routers share the gate projection (logits = x . W_gate^T, in f32).
 *
 * Two forms:
 *  - `select`: exactly top_k experts per token, on logits. The inference routers of real checkpoints
 *    (softmax_topk, deepseek_v2, deepseek_v3) are written this way; moe_router_assign() turns their
 *    choice into the general form without changing a bit of it.
 *  - `route`: any number of assignments per token (expert choice, capacity drops, top-p, sparsemax,
 *    BASE), or dense dispatch and combine matrices (Soft MoE, kind MOE_ROUTE_SOFT).
 * One file per router (router_*.c), one line per router in router_registry.c. docs/ROUTERS.md gives
 * each router's paper and formula. */
#ifndef MOE_MOE_ROUTER_H
#define MOE_MOE_ROUTER_H
#include "core/tensor.h"
#include "moe.h"
#include <stdint.h>

typedef struct moe_router_params {
    int n_experts, top_k, d_model;
    int norm_topk_prob;       /* renormalise the chosen weights to sum to 1 */
    double routed_scaling;    /* multiply final weights (DeepSeek) */
    int n_group, topk_group;  /* group-limited selection (DeepSeek); n_group <= 1 means off */
    int group_limited;
    double norm_min;          /* renormalise by max(sum, norm_min) (ERNIE); 0: by the sum */
    double jitter_eps;        /* sparsemixer: relative margin of the experts considered (phimoe) */
    /* the router zoo; 0 means the router's default */
    double capacity_factor;   /* switch, expert_choice: capacity = ceil(factor * tokens * k / experts) */
    double top_p;             /* top_p: cumulative probability to reach */
    int slots;                /* soft: slots per expert */
    int rank;                 /* aoe: width of the low-rank factor each expert ranks itself by */
    uint64_t seed;            /* hash, thor: seed of the fixed hash / inference draw */
} moe_router_params;

typedef struct moe_router moe_router;

enum { MOE_ROUTE_SPARSE = 0, MOE_ROUTE_SOFT = 1 };

/* What a router may look at for one batch. */
typedef struct moe_route_in {
    const float *logits;      /* [n][n_logits] gate outputs (NULL for routers without a gate) */
    int n;                    /* tokens */
    int seq_len;              /* tokens per sequence (Soft MoE groups, sequence-wise loss); n for one sequence */
    const int32_t *token_ids; /* [n] input token ids (hash routing), or NULL */
    const int *pos;           /* [n] positions in the sequence, or NULL (then t % seq_len) */
    int layer;
    int training;             /* the training forward: THOR draws at random, BASE balances the batch */
    uint64_t *rng;            /* state of the training random stream (THOR) */
} moe_route_in;

/* A routing decision. Sparse routers fill n assignments in ascending token order (within a token, in
 * the router's order of preference); Soft MoE fills dispatch and combine instead. */
typedef struct moe_assign {
    int n_tokens, n_experts, n_logits, cap;
    int n;                    /* assignments in use */
    int *tok, *exp;           /* [cap] */
    float *w;                 /* [cap] combine weights */
    float *probs;             /* [n_tokens][n_experts] router probabilities (losses, statistics, hook) */
    float *save;              /* [n_tokens][max(n_logits, n_experts)] kept by a router for its backward */
    float *dispatch, *combine;/* Soft MoE: [n_tokens][n_logits], softmax over tokens / over slots */
    int *itmp;                /* [2 * cap + n_tokens + n_experts + 2] scratch (the sort uses cap*2 + n_tokens + 1) */
    float *ftmp;              /* [max(cap, n_tokens * n_logits)] scratch */
} moe_assign;

typedef struct moe_router_ops {
    const char *name;
    const char *summary;
    /* logits [n][E] -> scores [n][E], expert [n][k] (descending score order), weight [n][k]; or NULL. */
    void (*select)(const moe_router *r, const float *logits, int n, float *scores, int *expert, float *weight);
    /* The general form; NULL means `select` with top_k per token. */
    moe_status (*route)(const moe_router *r, const moe_route_in *in, moe_assign *out);
    /* d_w [out->n] = dL/d(weight) of each assignment (Soft MoE: d_w = dL/d(dispatch), d_probs =
     * dL/d(combine), both [n][n_logits]); d_probs [n][E] = dL/d(probs) or NULL -> d_logits [n][n_logits]
     * (overwritten). NULL where the router has nothing to differentiate (hash, THOR). */
    void (*backward)(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                     const float *d_probs, float *d_logits);
    int kind;                 /* MOE_ROUTE_SPARSE or MOE_ROUTE_SOFT */
    /* Rows of the gate matrix; NULL means n_experts. 0 means the router has no gate. */
    int (*n_logits)(const moe_router_params *p);
    /* After a training step: update state that is not learned by gradient (DeepSeek's bias) from the
     * batch's expert loads [E]. May be NULL. */
    void (*update)(moe_router *r, const int *load, double rate);
} moe_router_ops;

struct moe_router {
    const moe_router_ops *ops;
    moe_router_params p;
    moe_tensor gate;          /* [n_logits][d_model] */
    const float *score_bias;  /* [n_experts] added to scores for the choice only (DeepSeek-V3, ERNIE), or NULL */
    float *score_bias_rw;     /* the same buffer when training owns it (updated by ops->update) */
};

const moe_router_ops *moe_router_find(const char *name);
/* Comma-separated list of router names, for messages and --help. */
const char *moe_router_names(void);
/* Rows of the router's gate matrix (0: no gate). */
int moe_router_n_logits(const moe_router *r);

/* Full routing of n tokens: gate projection then select. logits and scores are [n][E] scratch. */
void moe_router_route(const moe_router *r, const float *x, int n, float *logits, float *scores, int *expert,
                      float *weight);

/* Buffers for a routing decision over n tokens (every assignment possible: cap = n * E). */
moe_status moe_assign_init(moe_assign *a, int n_tokens, int n_experts, int n_logits);
void moe_assign_free(moe_assign *a);
/* Route a batch in the general form (in->logits already computed). */
moe_status moe_router_assign(const moe_router *r, const moe_route_in *in, moe_assign *out);

/* Indices of the k largest values of v[0..n) in descending order; ties go to the lower index. */
void moe_topk(const float *v, int n, int k, int *idx);

/* Helpers for router files. */
void moe_softmax_row(const float *x, float *y, int n);                    /* y = softmax(x), torch's order */
void moe_softmax_row_bwd(const float *y, const float *dy, float *dx, int n); /* dx = y * (dy - <dy, y>) */
/* Gradient of top-k weights w_j = scale * p_j (/ sum of the chosen p if norm) with respect to p:
 * dp[ex[j]] += ..., for the k chosen experts of one token. */
void moe_topk_weights_bwd(const float *p, const int *ex, const float *dw, int k, int norm, double scale, float *dp);
/* Sort the first a->n assignments into ascending token order, stable (a counting sort). */
void moe_assign_sort_by_token(moe_assign *a);
/* Backward of routers whose weight is the softmax probability p[t][e] itself (times routed_scaling):
 * switch and expert_choice. */
void moe_router_softmax_weight_bwd(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                                   const float *d_probs, float *d_logits);
/* Assign token t to expert h mod E with weight 1/k, or to the next expert not yet among the token's
 * assignments since index first (k distinct experts from k draws; needs k <= E). */
void moe_assign_add_distinct(moe_assign *a, int first, int t, uint64_t h, int E, int k);
/* 64-bit mix (splitmix64 finaliser) used by hash routing and THOR's inference draw. */
uint64_t moe_hash64(uint64_t x);
/* Uniform draw from the training random stream (xorshift64*). */
uint64_t moe_rng_next(uint64_t *state);
#endif
