/* arch_mixtral.c - Mixtral: every layer is MoE; softmax over all experts, top-k, weights renormalised
 * over the chosen k. Experts are named w1 (gate), w3 (up), w2 (down) under block_sparse_moe. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {32000, 4096, 14336, 32, 32, 8, 131072, 1e-5, 1e6};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(moe_config_int_alias(path, root, "num_local_experts", "num_experts", 0, 8, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 2, 1, 65536, &c->top_k));
    MOE_TRY(moe_config_sliding_all(path, root, c));
    c->moe_intermediate = c->intermediate;
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_MOE;
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->norm_topk_prob = 1;
    c->moe_block = "block_sparse_moe";
    c->expert_gate = "w1"; c->expert_up = "w3"; c->expert_down = "w2";
    return MOE_OK;
}

const moe_arch moe_arch_mixtral = {"mixtral", parse};
