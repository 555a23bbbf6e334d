/* router.h - the router interface, shared by inference and training, and the routing decision every
 * router produces. A router turns a batch of tokens' gate outputs into assignments (token, expert,
 * combine weight) and, for training, maps the gradient of those weights (and of its probabilities,
 * from the balancing losses) back to the gate outputs. Linear routers share the gate projection
 * (logits = x . W_gate^T, in f32).
 *
 * Two forms of router, one decision (moe_assign):
 *  - `select`: exactly top_k experts per token, on logits. The inference routers of real checkpoints
 *    (softmax_topk, deepseek_v2, deepseek_v3) are written this way; moe_router_assign() lays their
 *    choice out as a decision (token-major, k per token) without changing a bit of it.
 *  - `route`: any number of assignments per token (expert choice, capacity drops, top-p, sparsemax,
 *    BASE), or dense dispatch and combine matrices (Soft MoE, kind MOE_ROUTE_SOFT).
 * moe_assign_group() then sorts the decision by expert (offsets per expert, each row's token and
 * weight), which is what the expert executors consume (src/moe/experts.h for inference, tmoe.c for
 * training). What differs between routers beyond routing itself (an expert gate factored through the
 * router, token ids, a score bias, trainability, which checkpoint layouts express it) is declared
 * as fields of moe_router_ops, never found by comparing names.
 * One file per router (router_*.c), one line per router in router_registry.c. docs/ROUTERS.md gives
 * each router's paper and formula. */
#ifndef MOE_MOE_ROUTER_H
#define MOE_MOE_ROUTER_H
#include "core/arena.h"
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

/* The routing decision of one batch. A router fills n assignments (tok, exp, w), sparse routers in
 * ascending token order (within a token, in the router's order of preference), plus probs; Soft MoE
 * fills dispatch and combine instead (n = 0). moe_assign_group() adds the view by expert that the
 * executors run: rows [offset[e], offset[e+1]) are expert e's, row r serves token row_tok[r] with
 * weight row_w[r] and is assignment row_src[r]; within an expert, rows keep the assignments' order
 * (ascending token). For Soft MoE a row is a slot: expert e's slots are rows e*S .. e*S+S-1.
 * Transforms of a decision (dynamic routing, steering, pruning, capacity) edit tok/exp/w before it
 * is grouped; the grouped view is what is executed. */
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
    /* the view by expert (moe_assign_group) */
    int rows;                 /* grouped rows: n, or n_logits slots (Soft MoE) */
    int *offset;              /* [n_experts + 1] */
    int *row_tok, *row_src;   /* [cap] token and assignment of each row (sparse only) */
    float *row_w;             /* [cap] combine weight of each row (sparse only) */
    int in_arena;             /* buffers come from an arena: moe_assign_free only forgets them */
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
    /* Capabilities: what the loader, the layer and the trainer must know of a router besides routing. */
    int expert_gate_factored; /* the experts' gate projections start from the router's outputs: expert e's
                               * gate matrix is [d_ff][rank] applied to logits [e*rank, (e+1)*rank),
                               * rank = n_logits / n_experts (Autonomy-of-Experts) */
    int needs_token_ids;      /* route reads in->token_ids (hash routing) */
    int score_bias;           /* keeps a per-expert score bias for the choice (e_score_correction_bias) */
    int trainable;            /* `moe train` can train it (a router without backward may still be: no parameters) */
    double default_capacity;  /* capacity_factor when none is given; 0 means 1.0 */
    int own_count;            /* the router decides how many experts a token gets by its own rule, whatever
                               * top_k says (SparseMixer: two; top-p, sparsemax: a variable number), so a
                               * per-layer k (route_policy.h) re-selects by probability instead of re-running it */
    int weights_normalised;   /* its weights are already relative to the chosen experts (SparseMixer's are
                               * softmaxes over the near-best): a re-selection by probability renormalises */
    /* Training layouts (tconfig's names, space-separated) whose transformers class computes this router
     * from its own config keys, so a checkpoint in that layout needs no moe_router key; NULL for none. */
    const char *hf_layouts;
} moe_router_ops;

struct moe_router {
    const moe_router_ops *ops;
    moe_router_params p;
    moe_tensor gate;          /* [n_logits][d_model] */
    const float *gate_bias;   /* [n_logits] added to the gate outputs (gpt-oss's router), or NULL */
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
/* The gate outputs of n tokens: logits [n][nl] = x . gate^T (+ gate_bias). */
void moe_router_logits(const moe_router *r, const float *x, int n, int nl, float *logits);

/* Buffers for a routing decision over n tokens (every assignment possible: cap = n * E). */
moe_status moe_assign_init(moe_assign *a, int n_tokens, int n_experts, int n_logits);
void moe_assign_free(moe_assign *a);
/* The same buffers from an arena (the inference layer's scratch); soft: also dispatch and combine.
 * Released with the arena (moe_assign_free is harmless). */
moe_status moe_assign_init_arena(moe_assign *a, int n_tokens, int n_experts, int n_logits, int soft, moe_arena *ar);
/* Route a batch in the general form (in->logits already computed). */
moe_status moe_router_assign(const moe_router *r, const moe_route_in *in, moe_assign *out);
/* Group the decision by expert (the rows, offsets, row_* arrays above): a stable counting sort, so a
 * select router's rows come out exactly as the inference layer always grouped them. Fails on an
 * expert id or token out of range (a transform's bug), naming `who`. Soft MoE: rows are the slots. */
moe_status moe_assign_group(moe_assign *a, const char *who);
/* Whether `layout` is among the router's hf_layouts (0 for a NULL router). */
int moe_router_native_layout(const moe_router_ops *ops, const char *layout);

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
