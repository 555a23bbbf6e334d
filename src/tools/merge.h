/* merge.h - expert merging (the library side of `moe merge`, docs/COMPRESSION.md).
 *
 * Every MoE layer's E experts become `groups` merged experts; the router is left as it is and sends
 * each original expert's traffic to its group's merged expert (a token choosing two experts of one
 * group gets that merged expert with both weights). Calibration (tools/expert_calib.h) gives each
 * expert's selection frequency f_e, and keeps the router scores and inputs x of a sample of tokens.
 *
 *   msmoe  M-SMoE (Li et al. 2024, "Merge, Then Compress"): the `groups` most frequently selected
 *          experts are the dominant ones; every other expert joins the dominant expert whose router
 *          scores over the sampled tokens are most similar (cosine). Before averaging, each member's
 *          FFN neurons are permuted to line up with the dominant expert's: the permutation maximises
 *          the summed correlation of paired neurons' activations silu(gate x) * (up x) over the sampled
 *          tokens, found with the Hungarian algorithm (tools/hungarian.h); gate and up rows and down
 *          columns are permuted together, so a member's own function is unchanged by its permutation.
 *   hcsmoe HC-SMoE (Chen et al. 2025): hierarchical clustering (average linkage, Euclidean distance) of
 *          the experts' mean outputs over the sampled tokens, until `groups` clusters remain.
 * A group's merged weights are the average of its members' (aligned) weights weighted by f_e (equal
 * weights if no member was selected), computed in double and rounded once to the file's dtype: merging
 * identical experts gives them back bit for bit. With groups == E nothing changes.
 *
 * Layouts: compact (default) stores `groups` experts per layer and a slot map (expert_rewrite.h; moe
 * loads it, transformers refuses it); hf stores E experts, each a copy of its group's merged expert,
 * which transformers loads as the same function (and moe too) at the original size. */
#ifndef MOE_TOOLS_MERGE_H
#define MOE_TOOLS_MERGE_H
#include <stdio.h>
#include "tools/expert_calib.h"

typedef enum { MOE_MERGE_MSMOE = 0, MOE_MERGE_HCSMOE } moe_merge_method;

typedef struct moe_merge_options {
    moe_merge_method method;
    int groups;                /* merged experts per MoE layer */
    int hf_layout;             /* write E experts (copies) instead of the compact layout */
    int64_t shard_bytes;
    FILE *log;
} moe_merge_options;

moe_status moe_merge_check(moe_model *m, int groups);
moe_status moe_merge_model(moe_model *m, const moe_calib *cal, const char *out_dir, const moe_merge_options *o);
#endif
