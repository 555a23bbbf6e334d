/* expert_rewrite.h - writing a copy of a model folder with a different set of routed experts: what
 * `moe prune` and `moe merge` produce (docs/COMPRESSION.md).
 *
 * Every tensor that is not a routed expert or a router is copied unchanged. Per MoE layer, the output
 * holds n_store experts and a router of n_slots rows:
 *   - router rows (gate.weight, and DeepSeek-V3's gate.e_score_correction_bias) are rows[] of the input's;
 *   - stored expert j is either a copy of input expert src[j] (pruning: every per-expert tensor,
 *     "experts.<e>.<name>", is renamed to index j; fused tensors "experts.<name>" of transformers 5 keep
 *     their slices src[]), or f32 weights produced by a callback (merging), written in the input's
 *     dtype with round-to-nearest;
 *   - with map != NULL (a compact merged checkpoint) n_slots > n_store and the I32 tensor
 *     "<block>.moe_expert_map" [n_slots] says which stored expert serves each router slot; config.json
 *     then gets "moe_expert_slots" (model/config_moe.c).
 * config.json's expert count (num_experts, num_local_experts or n_routed_experts, whichever the file
 * has, or the family's own key) becomes n_store. The tensors go to OUT/model.safetensors, or to shards
 * of at most shard_bytes with model.safetensors.index.json; every file is written atomically. Tokenizer
 * and generation files are copied; training state and fitted predictors (which name experts) are not.
 * Block-quantized inputs are refused: compress the float model, then quantize. */
#ifndef MOE_TOOLS_EXPERT_REWRITE_H
#define MOE_TOOLS_EXPERT_REWRITE_H
#include <stdio.h>
#include "model/model.h"

typedef struct moe_expert_plan {
    int n_store, n_slots;
    const int *rows;    /* [n_moe][n_slots] input router row of each output row */
    const int *src;     /* [n_moe][n_store] input expert of each stored expert, or NULL with `merged` */
    const int *map;     /* [n_moe][n_slots] stored expert of each slot, or NULL (n_slots == n_store) */
    /* stored expert j of MoE layer i (i counts MoE layers) as f32 gate[ff][d], up[ff][d], down[d][ff] */
    moe_status (*merged)(void *user, int i, int j, float *gate, float *up, float *down);
    void *user;
    const char *report;   /* JSON text written to OUT/moe_compression.json, or NULL */
    int64_t shard_bytes;  /* 0: 4 GiB */
    FILE *log;
} moe_expert_plan;

moe_status moe_expert_rewrite(moe_model *m, const char *out_dir, const moe_expert_plan *p);

/* The model can be rewritten: no block-quantized tensors, not already a merged checkpoint. */
moe_status moe_expert_rewrite_check(moe_model *m);
/* The folder may be written: created if missing, not the model's own folder. */
moe_status moe_expert_out_dir(moe_model *m, const char *out_dir);
#endif
