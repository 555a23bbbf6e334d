/* arch_glm4_moe.c - GLM-4.5 / 4.6 / 4.5-Air (zai-org), as transformers implements Glm4Moe.
 * Attention: GQA with biases on q, k, v (not o), optional RMSNorm over each head of q and k
 * (use_qk_norm), RoPE on the first partial_rotary_factor (default 0.5) of each head, pairs on halves.
 * FFN: the first first_k_dense_replace layers dense, then DeepSeek-V3's MoE block: sigmoid scores plus
 * e_score_correction_bias for the choice only, group-limited top-k (group score = sum of the top 2),
 * optional renormalisation, times routed_scaling_factor; n_shared_experts always-on experts fused
 * into one FFN of width moe_intermediate_size * n_shared_experts.
 * The checkpoints' multi-token-prediction layers (num_nextn_predict_layers, stored after the last
 * layer) are not used for plain decoding; transformers skips them the same way. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {151552, 4096, 10944, 46, 96, 8, 131072, 1e-5, 10000};
    static const moe_common_extras x = {.partial_rotary = 0.5};
    MOE_TRY(moe_config_common_ex(path, root, &d, &x, c));
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    int qk_norm;
    MOE_TRY(moe_json_bool(path, root, "use_qk_norm", 0, 0, &qk_norm));
    c->qk_norm = qk_norm ? MOE_QKNORM_HEAD : MOE_QKNORM_NONE;
    MOE_TRY(moe_config_int_alias(path, root, "n_routed_experts", "num_local_experts", 0, 128, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 8, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_int32(path, root, "moe_intermediate_size", 0, 1408, 1, 1 << 20, &c->moe_intermediate));
    MOE_TRY(moe_json_int32(path, root, "n_shared_experts", 0, 1, 0, 65536, &c->n_shared_experts));
    if ((int64_t)c->moe_intermediate * c->n_shared_experts > 1 << 20)
        return moe_fail(MOE_EINPUT, "%s: moe_intermediate_size %d x n_shared_experts %d is too large for the shared experts",
                        path, c->moe_intermediate, c->n_shared_experts);
    c->shared_intermediate = c->moe_intermediate * c->n_shared_experts;
    int first_dense;
    MOE_TRY(moe_json_int32(path, root, "first_k_dense_replace", 0, 1, 0, 1 << 20, &first_dense));
    MOE_TRY(moe_json_num(path, root, "routed_scaling_factor", 0, 1.0, -1e6, 1e6, &c->routed_scaling));
    MOE_TRY(moe_json_int32(path, root, "n_group", 0, 1, 1, 65536, &c->n_group));
    MOE_TRY(moe_json_int32(path, root, "topk_group", 0, 1, 1, 65536, &c->topk_group));
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 1, &c->norm_topk_prob));
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = i >= first_dense ? MOE_FFN_MOE : MOE_FFN_DENSE;
    c->has_score_bias = 1;
    c->group_limited = 1;
    snprintf(c->router, sizeof c->router, "deepseek_v3");
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    c->shared_name = "shared_experts";
    return MOE_OK;
}

const moe_arch moe_arch_glm4_moe = {"glm4_moe", parse};
