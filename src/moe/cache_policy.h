/* cache_policy.h - which expert to evict when the on-disk expert store needs a slot.
 * A policy is one pure function from what the store knows about a cached expert to a value; the store
 * evicts the evictable expert of lowest value. Keeping policies stateless (the store owns every counter)
 * makes them one function each, comparable side by side, and trivially testable. Adding a policy adds
 * one function and one line in the table in cache_policy.c. */
#ifndef MOE_MOE_CACHE_POLICY_H
#define MOE_MOE_CACHE_POLICY_H
#include <stdint.h>

typedef struct moe_cache_key_stats {
    int layer_rank, n_moe_layers; /* depth of the expert's layer among the MoE layers (0 = shallowest) */
    int top_k;                    /* experts per token */
    uint64_t now;                 /* store clock: expert acquisitions so far */
    uint64_t last_use;            /* clock at this expert's last acquisition */
    uint64_t uses;                /* acquisitions of this expert since the model was loaded */
    uint32_t seq_uses;            /* tokens routed to it in the current sequence */
    uint32_t seq_tokens;          /* tokens of the current sequence its layer has routed */
    float hist;                   /* its activation ratio in past sequences (decayed mean) */
} moe_cache_key_stats;

typedef struct moe_cache_policy {
    const char *name;
    const char *summary;
    int keeps;                                   /* 0: nothing survives a release (on demand only) */
    double (*value)(const moe_cache_key_stats *s); /* lower is evicted first */
} moe_cache_policy;

/* NULL if unknown. */
const moe_cache_policy *moe_cache_policy_find(const char *name);
/* "lru, lfu, activation, fate, none" for messages and --help. */
const char *moe_cache_policy_names(void);
#endif
