/* arch_deepseek.c - DeepSeek-V2 and DeepSeek-V3, as transformers implements them.
 * Both: Multi-head Latent Attention (low-rank q and kv with a decoupled RoPE part), the first
 * first_k_dense_replace layers dense, then routed experts plus n_shared_experts always-on experts
 * fused into one FFN of width moe_intermediate_size * n_shared_experts.
 * V2: softmax scores, greedy or group-limited (group score = max) top-k, weights times
 *     routed_scaling_factor; transformers' V2 does not renormalise (norm_topk_prob is unused there).
 *     RoPE on interleaved pairs (complex multiplication).
 * V3: sigmoid scores plus e_score_correction_bias for the choice only, group score = sum of the top 2,
 *     top-k inside the best topk_group groups, optional renormalisation, times routed_scaling_factor.
 *     RoPE on interleaved pairs when rope_interleave (default), else on halves.
 * Both: with rope scaling the softmax scale is multiplied by mscale(factor, mscale_all_dim)^2, as in
 * DeepSeek's reference code, vLLM, llama.cpp and transformers >= 5 (transformers 4.x does it for V3
 * only: its V2 attention is a factor of mscale^2, 1.59 for V2-Lite's YaRN, too flat; docs/ARCHITECTURE.md).
 * transformers 5 spells the expert count either way (attribute_map): V2 n_routed_experts or
 * num_experts, V3 n_routed_experts or num_local_experts. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static moe_status parse_mla_and_moe(const char *path, const cJSON *root, moe_config *c, const char *experts_alias,
                                    int def_experts, int def_topk, int def_moe_inter, int def_shared, int def_first_dense,
                                    double def_scaling) {
    c->mla = 1;
    MOE_TRY(moe_json_int32(path, root, "q_lora_rank", 0, 1536, 1, 1 << 20, &c->q_lora_rank));
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "q_lora_rank"))) c->q_lora_rank = 0; /* plain q_proj */
    MOE_TRY(moe_json_int32(path, root, "kv_lora_rank", 0, 512, 1, 1 << 20, &c->kv_lora_rank));
    MOE_TRY(moe_json_int32(path, root, "qk_nope_head_dim", 0, 128, 0, 65536, &c->qk_nope_dim));
    MOE_TRY(moe_json_int32(path, root, "qk_rope_head_dim", 0, 64, 2, 65536, &c->qk_rope_dim));
    MOE_TRY(moe_json_int32(path, root, "v_head_dim", 0, 128, 1, 65536, &c->v_head_dim));
    int bias;
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &bias));
    c->qkv_bias = c->o_bias = bias;  /* on q_a_proj (or none with q_proj), kv_a_proj_with_mqa and o_proj */
    MOE_TRY(moe_config_require_bool(path, root, "mlp_bias", 0));
    c->n_kv_heads = c->n_heads; /* MLA expands k and v per head */
    c->head_dim = c->qk_nope_dim + c->qk_rope_dim;
    c->rope.dim = c->qk_rope_dim;
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
    if (strcmp(c->rope.type, "default") != 0 && c->rope.mscale_all_dim != 0) {
        double m = moe_yarn_mscale(c->rope.factor, c->rope.mscale_all_dim);
        c->attn_scale *= m * m;
    }

    MOE_TRY(moe_config_int_alias(path, root, "n_routed_experts", experts_alias, 0, def_experts, 0, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", def_topk < 0, def_topk, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_int32(path, root, "moe_intermediate_size", 0, def_moe_inter, 1, 1 << 20, &c->moe_intermediate));
    MOE_TRY(moe_json_int32(path, root, "n_shared_experts", 0, def_shared, 0, 65536, &c->n_shared_experts));
    if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "n_shared_experts"))) c->n_shared_experts = 0;
    if ((int64_t)c->moe_intermediate * c->n_shared_experts > 1 << 20)
        return moe_fail(MOE_EINPUT, "%s: moe_intermediate_size %d x n_shared_experts %d is too large for the shared experts",
                        path, c->moe_intermediate, c->n_shared_experts);
    c->shared_intermediate = c->moe_intermediate * c->n_shared_experts;
    int first_dense;
    MOE_TRY(moe_json_int32(path, root, "first_k_dense_replace", 0, def_first_dense, 0, 1 << 20, &first_dense));
    MOE_TRY(moe_json_num(path, root, "routed_scaling_factor", 0, def_scaling, -1e6, 1e6, &c->routed_scaling));
    for (int i = 0; i < c->n_layers; i++)
        c->ffn_kind[i] = i >= first_dense && c->n_experts > 0 ? MOE_FFN_MOE : MOE_FFN_DENSE;
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    c->shared_name = "shared_experts";
    return MOE_OK;
}

static moe_status parse_v2(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {32000, 4096, 11008, 32, 32, 32, 2048, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(parse_mla_and_moe(path, root, c, "num_experts", 64, -1, 1407, 2, 0, 1.0));
    const char *method;
    MOE_TRY(moe_json_str(path, root, "topk_method", 0, "greedy", &method));
    if (!strcmp(method, "group_limited_greedy")) {
        c->group_limited = 1;
        MOE_TRY(moe_json_int32(path, root, "n_group", 1, 1, 1, 65536, &c->n_group));
        MOE_TRY(moe_json_int32(path, root, "topk_group", 1, 1, 1, 65536, &c->topk_group));
    } else if (strcmp(method, "greedy") != 0) {
        return moe_fail(MOE_EINPUT, "%s: field \"topk_method\" = \"%.40s\" is not supported (greedy, group_limited_greedy)",
                        path, method);
    }
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 0, &c->norm_topk_prob));
    snprintf(c->router, sizeof c->router, "deepseek_v2");
    c->rope.layout = MOE_ROPE_PAIRS_INTERLEAVED;
    return MOE_OK;
}

static moe_status parse_v3(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {129280, 7168, 18432, 61, 128, 128, 4096, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(parse_mla_and_moe(path, root, c, "num_local_experts", 256, 8, 2048, 1, 3, 2.5));
    MOE_TRY(moe_json_int32(path, root, "n_group", 0, 8, 1, 65536, &c->n_group));
    MOE_TRY(moe_json_int32(path, root, "topk_group", 0, 4, 1, 65536, &c->topk_group));
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 1, &c->norm_topk_prob));
    int interleave;
    MOE_TRY(moe_json_bool(path, root, "rope_interleave", 0, 1, &interleave));
    c->rope.layout = interleave ? MOE_ROPE_PAIRS_INTERLEAVED : MOE_ROPE_PAIRS_HALF;
    c->has_score_bias = 1;
    c->group_limited = 1;
    snprintf(c->router, sizeof c->router, "deepseek_v3");
    return MOE_OK;
}

const moe_arch moe_arch_deepseek_v2 = {"deepseek_v2", parse_v2};
const moe_arch moe_arch_deepseek_v3 = {"deepseek_v3", parse_v3};
