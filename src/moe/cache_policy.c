/* cache_policy.c - the eviction policies of the on-disk expert store (see cache_policy.h).
 *
 *   lru         least recently acquired goes first. The baseline: decode reuses the experts of the
 *               last few tokens, which recency captures without any model knowledge.
 *   lfu         least often acquired since load goes first (recency breaks ties). Keeps the experts a
 *               model prefers overall; slow to adapt when a sequence changes topic.
 *   activation  MoE-Infinity's activation-aware cache: the current sequence's expert activation
 *               counts (its "expert activation matrix") predict reuse within that sequence; past
 *               sequences' ratios serve as a prior when the sequence is young. Recency breaks ties.
 *   fate        Fate's shallow-favouring cache: recency, with experts of shallow layers treated as up
 *               to one token's worth of acquisitions more recent than those of the deepest layer.
 *               Shallow layers are the hardest to prefetch (least time and context before they run),
 *               so their experts are the most valuable to keep.
 *   none        nothing is kept after release: every use reads from disk (the "on demand" baseline). */
#include "moe/cache_policy.h"
#include <string.h>

static double lru(const moe_cache_key_stats *s) { return (double)s->last_use; }

/* uses dominate; last_use / (now + 1) < 1 only orders equal counts */
static double lfu(const moe_cache_key_stats *s) { return (double)s->uses + (double)s->last_use / ((double)s->now + 1.0); }

static double activation(const moe_cache_key_stats *s) {
    double ratio = s->seq_tokens ? (double)s->seq_uses / s->seq_tokens : 0.0;
    /* a young sequence leans on the history; by ~32 tokens its own counts dominate */
    double w = s->seq_tokens / (s->seq_tokens + 32.0);
    double v = w * ratio + (1.0 - w) * s->hist;
    return v * 1e3 + (double)s->last_use / ((double)s->now + 1.0);
}

static double fate(const moe_cache_key_stats *s) {
    double per_token = (double)s->n_moe_layers * (s->top_k > 0 ? s->top_k : 1);
    double shallow = s->n_moe_layers > 0 ? (double)(s->n_moe_layers - s->layer_rank) / s->n_moe_layers : 0;
    return (double)s->last_use + per_token * shallow;
}

static double none(const moe_cache_key_stats *s) { (void)s; return 0; }

static const moe_cache_policy k_policies[] = {
    {"lru", "least recently used", 1, lru},
    {"lfu", "least frequently used (recency breaks ties)", 1, lfu},
    {"activation", "per-sequence activation counts predict reuse (MoE-Infinity)", 1, activation},
    {"fate", "recency, favouring shallow layers' experts (Fate)", 1, fate},
    {"none", "keep nothing: every use reads from disk (on demand only)", 0, none},
};

const moe_cache_policy *moe_cache_policy_find(const char *name) {
    for (size_t i = 0; name && i < sizeof k_policies / sizeof *k_policies; i++)
        if (!strcmp(k_policies[i].name, name)) return &k_policies[i];
    return NULL;
}

const char *moe_cache_policy_names(void) { return "lru, lfu, activation, fate, none"; }
