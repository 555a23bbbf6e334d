/* expert_store_disk.h - routed experts read from the model's files into a fixed set of slots.
 *
 * Build it with moe_store_disk_new, describe every expert with moe_store_disk_add (where its three
 * matrices lie in which file), then moe_store_disk_finish sizes the slots from the budget. After that
 * it is an ordinary moe_store: the MoE layer cannot tell it from the resident one, and the matrices it
 * hands out hold the same bytes, so the outputs are bit-identical. See expert_store_disk.c for the
 * design and docs/OFFLOAD.md for what it costs. */
#ifndef MOE_MOE_EXPERT_STORE_DISK_H
#define MOE_MOE_EXPERT_STORE_DISK_H
#include "moe/cache_policy.h"
#include "moe/expert_store.h"

typedef struct moe_disk_store_config {
    int n_layers, n_experts, top_k;
    int64_t budget;                 /* bytes of slots */
    const moe_cache_policy *policy; /* NULL: lru */
    int prefetch;                   /* async reads of the experts a layer routed to */
    int predict;                    /* with prefetch: also read predicted experts (sets predict_next) */
    int direct_io;                  /* open the files with O_DIRECT */
    int io_threads;                 /* reader threads when prefetching (<= 0: 2) */
} moe_disk_store_config;

/* paths[n_files]: the files experts live in (opened here, read-only). */
moe_status moe_store_disk_new(const moe_disk_store_config *cfg, const char *const *paths, int n_files,
                              moe_store **out);
/* Expert (layer, expert) has its gate, up and down matrices at byte offsets off[i] of files file[i];
 * w gives their dtype, shape and size (w's data pointers are ignored). */
moe_status moe_store_disk_add(moe_store *s, int layer, int expert, const int file[3], const moe_ffn_weights *w,
                              const uint64_t off[3]);
/* Check every MoE layer's experts were added, size the slots and start the readers. */
moe_status moe_store_disk_finish(moe_store *s);

/* Non-zero if s is a disk store; then fills the counters. */
int moe_store_disk_stats(moe_store *s, moe_offload_stats *out);
void moe_store_disk_stats_reset(moe_store *s);
#endif
