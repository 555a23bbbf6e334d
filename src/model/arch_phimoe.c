/* arch_phimoe.c - Phi-3.5-MoE (Microsoft), as transformers implements Phimoe.
 * Mixtral's layout (w1, w3, w2 under block_sparse_moe; transformers 5 writes mlp.router and fused
 * experts) with LayerNorm (weight and bias) instead of RMSNorm, optional biases on q, k, v, o and the
 * head, an optional sliding window on every layer, and SparseMixer routing (router_sparsemixer.c),
 * which always picks two experts. RoPE: default, or LongRoPE with short_factor and short_mscale /
 * long_mscale (transformers' Phimoe computes the frequencies from short_factor only). */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>
#include <string.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {32064, 4096, 6400, 32, 32, 8, 131072, 1e-5, 1e6};
    static const moe_common_extras x = {.longrope = 1};
    MOE_TRY(moe_config_common_ex(path, root, &d, &x, c));
    if (strcmp(c->rope.type, "default") && strcmp(c->rope.type, "longrope"))
        return moe_fail(MOE_EINPUT, "%s: rope type \"%s\" is not supported for phimoe (default, longrope)", path, c->rope.type);
    c->norm = MOE_NORM_LAYER;
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    MOE_TRY(moe_json_bool(path, root, "lm_head_bias", 0, 0, &c->lm_head_bias));
    MOE_TRY(moe_config_sliding_all(path, root, c));
    MOE_TRY(moe_json_int32(path, root, "num_local_experts", 0, 16, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 2, 1, 65536, &c->top_k));
    if (c->top_k != 2)
        return moe_fail(MOE_EINPUT, "%s: field \"num_experts_per_tok\" = %d: phimoe's SparseMixer routes exactly 2 experts",
                        path, c->top_k);
    MOE_TRY(moe_json_num(path, root, "router_jitter_noise", 0, 0.01, 0, 1e6, &c->jitter_eps));
    c->moe_intermediate = c->intermediate;
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_MOE;
    snprintf(c->router, sizeof c->router, "sparsemixer");
    c->moe_block = "block_sparse_moe";
    c->expert_gate = "w1"; c->expert_up = "w3"; c->expert_down = "w2";
    c->router_names[0] = "gate.weight";
    c->router_names[1] = "router.weight";
    return MOE_OK;
}

const moe_arch moe_arch_phimoe = {"phimoe", parse};
