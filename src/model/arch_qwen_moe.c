/* arch_qwen_moe.c - Qwen2-MoE and Qwen3-MoE.
 * Both: softmax top-k with optional renormalisation (norm_topk_prob), MoE on layers selected by
 * decoder_sparse_step and mlp_only_layers, dense SwiGLU elsewhere.
 * Qwen2-MoE adds q/k/v biases and a shared expert whose output is scaled by sigmoid(x . w_gate).
 * Qwen3-MoE adds RMSNorm over each head of q and k before RoPE. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>

static moe_status parse_common(const char *path, const cJSON *root, moe_config *c, const char *experts_alias,
                               int def_experts, int def_topk, int def_moe_inter) {
    if (experts_alias)
        MOE_TRY(moe_config_int_alias(path, root, "num_experts", experts_alias, 0, def_experts, 0, 65536, &c->n_experts));
    else
        MOE_TRY(moe_json_int32(path, root, "num_experts", 0, def_experts, 0, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, def_topk, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_int32(path, root, "moe_intermediate_size", 0, def_moe_inter, 1, 1 << 20, &c->moe_intermediate));
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 0, &c->norm_topk_prob));
    MOE_TRY(moe_config_qwen_sparse_layers(path, root, c));
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    return MOE_OK;
}

static moe_status parse_qwen2_moe(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {151936, 2048, 5632, 24, 16, 16, 32768, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(parse_common(path, root, c, NULL, 60, 4, 1408));
    MOE_TRY(moe_json_bool(path, root, "qkv_bias", 0, 1, &c->qkv_bias));
    MOE_TRY(moe_json_int32(path, root, "shared_expert_intermediate_size", 0, 5632, 0, 1 << 20, &c->shared_intermediate));
    MOE_TRY(moe_config_require_bool(path, root, "use_sliding_window", 0));
    c->shared_gate = c->shared_intermediate > 0;
    c->n_shared_experts = c->shared_intermediate > 0;
    c->shared_name = "shared_expert";
    return MOE_OK;
}

static moe_status parse_qwen3_moe(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {151936, 2048, 6144, 24, 32, 4, 32768, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(parse_common(path, root, c, "num_local_experts", 128, 8, 768));  /* 5.x writes num_local_experts */
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    c->qk_norm = MOE_QKNORM_HEAD;
    int sliding;
    MOE_TRY(moe_json_bool(path, root, "use_sliding_window", 0, 0, &sliding));
    if (sliding) {
        int w;
        MOE_TRY(moe_json_int32(path, root, "sliding_window", 0, 4096, 1, 1 << 30, &w));
        for (int i = 0; i < c->n_layers; i++) c->sliding_window[i] = w;
    }
    return MOE_OK;
}

const moe_arch moe_arch_qwen2_moe = {"qwen2_moe", parse_qwen2_moe};
const moe_arch moe_arch_qwen3_moe = {"qwen3_moe", parse_qwen3_moe};
