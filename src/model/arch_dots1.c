/* arch_dots1.c - dots.llm1 (rednote): Qwen3's attention (GQA with RMSNorm over each head of q and k)
 * with DeepSeek-V3's MoE block: sigmoid scores plus e_score_correction_bias for the choice only,
 * group-limited top-k (group score = sum of the top 2), optional renormalisation, times
 * routed_scaling_factor; n_shared_experts always-on experts fused into one FFN; the first
 * first_k_dense_replace layers dense. It is the standard layout `moe train` uses for DeepSeek-style
 * routing, since DeepSeek-V3 itself requires multi-head latent attention.
 * Sliding window: layers from max_window_layers on use sliding_window unless it is null, or as
 * "layer_types" says. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>
#include <string.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {152064, 4608, 10944, 62, 32, 32, 2048, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    c->qk_norm = MOE_QKNORM_HEAD;
    MOE_TRY(moe_config_int_alias(path, root, "n_routed_experts", "num_local_experts", 1, 0, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 1, 0, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_int32(path, root, "moe_intermediate_size", 0, 1408, 1, 1 << 20, &c->moe_intermediate));
    MOE_TRY(moe_json_int32(path, root, "n_shared_experts", 1, 0, 0, 65536, &c->n_shared_experts));
    c->shared_intermediate = c->moe_intermediate * c->n_shared_experts;
    int first_dense;
    MOE_TRY(moe_json_int32(path, root, "first_k_dense_replace", 0, 0, 0, 1 << 20, &first_dense));
    MOE_TRY(moe_json_num(path, root, "routed_scaling_factor", 0, 1.0, -1e6, 1e6, &c->routed_scaling));
    MOE_TRY(moe_json_int32(path, root, "n_group", 0, 1, 1, 65536, &c->n_group));
    MOE_TRY(moe_json_int32(path, root, "topk_group", 0, 1, 1, 65536, &c->topk_group));
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 0, &c->norm_topk_prob));
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = i >= first_dense ? MOE_FFN_MOE : MOE_FFN_DENSE;
    c->has_score_bias = 1;
    c->group_limited = 1;
    snprintf(c->router, sizeof c->router, "deepseek_v3");
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    c->shared_name = "shared_experts";
    /* sliding window: absent means the class default 4096 from layer max_window_layers on; null means none */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    int w = 4096, max_window_layers;
    if (sw && cJSON_IsNull(sw)) w = 0;
    else MOE_TRY(moe_json_int32(path, root, "sliding_window", 0, 4096, 1, 1 << 30, &w));
    MOE_TRY(moe_json_int32(path, root, "max_window_layers", 0, 62, 0, 1 << 20, &max_window_layers));
    for (int i = 0; i < c->n_layers; i++) c->sliding_window[i] = w && i >= max_window_layers ? w : 0;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
            return moe_fail(MOE_EINPUT, "%s: field \"layer_types\" must list one type per layer", path);
        int i = 0;
        for (const cJSON *e = lt->child; e; e = e->next, i++) {
            int sliding = cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention");
            if (!sliding && !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")))
                return moe_fail(MOE_EINPUT, "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"", path, i);
            if (sliding && !w) return moe_fail(MOE_EINPUT, "%s: layer_types[%d] is sliding but sliding_window is null", path, i);
            c->sliding_window[i] = sliding ? w : 0;
        }
    }
    return MOE_OK;
}

const moe_arch moe_arch_dots1 = {"dots1", parse};
