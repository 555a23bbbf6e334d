/* arch_gpt_oss.c - gpt-oss (OpenAI gpt-oss-20b / gpt-oss-120b), as transformers implements GptOss.
 * Attention: GQA with biases on q/k/v/o (attention_bias), a learned logit per head (self_attn.sinks)
 * that joins every softmax without a value, and layers alternating between a sliding window and full
 * attention (layer_types; by default even layers slide). RoPE: YaRN (factor 32 over 4096 positions,
 * no truncation of the correction range) on whole heads, pairs on halves. Every layer MoE: the router
 * (mlp.router, with a bias) takes the top-k logits and a softmax over those k (the same weights as a
 * softmax over all renormalised over the chosen). Experts are always fused: gate_up_proj alternates
 * gate and up columns and is stored for x . W ([E][H][2I], down_proj [E][I][H], each with a bias);
 * the released checkpoints hold them as MXFP4 (_blocks + _scales, [out][in] rows), joined at load
 * (io/weights.c). The experts' activation is the clamped SwiGLU (swiglu_alpha, swiglu_limit). */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include "moe/expert_store.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* "layer_types": one "sliding_attention" or "full_attention" per layer (absent or null: alternating,
 * layer 0 sliding). A sliding layer without a sliding_window attends to everything, as in transformers. */
static moe_status layer_types(const char *path, const cJSON *root, moe_config *c) {
    int w;
    MOE_TRY(moe_json_int32(path, root, "sliding_window", 0, 128, 1, 1 << 30, &w));
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    if (sw && cJSON_IsNull(sw)) w = 0;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (!lt || cJSON_IsNull(lt)) {
        for (int i = 0; i < c->n_layers; i++) c->sliding_window[i] = i % 2 == 0 ? w : 0;
        return MOE_OK;
    }
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return moe_fail(MOE_EINPUT, "%s: field \"layer_types\" must be a list of %d layer types", path, c->n_layers);
    int i = 0;
    for (const cJSON *e = lt->child; e; e = e->next, i++) {
        const char *s = cJSON_IsString(e) ? e->valuestring : "";
        if (!strcmp(s, "sliding_attention")) c->sliding_window[i] = w;
        else if (!strcmp(s, "full_attention")) c->sliding_window[i] = 0;
        else return moe_fail(MOE_EINPUT, "%s: field \"layer_types\"[%d] must be \"sliding_attention\" or \"full_attention\"", path, i);
    }
    return MOE_OK;
}

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {201088, 2880, 2880, 36, 64, 8, 131072, 1e-5, 150000};
    static const moe_common_extras x = {.head_dim = 64};
    MOE_TRY(moe_config_common_ex(path, root, &d, &x, c));
    /* GptOssConfig's rope when the file names none */
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if ((!rs || cJSON_IsNull(rs)) && (!rp || cJSON_IsNull(rp))) {
        snprintf(c->rope.type, sizeof c->rope.type, "yarn");
        c->rope.factor = 32;
        c->rope.beta_fast = 32;
        c->rope.beta_slow = 1;
        c->rope.truncate = 0;
        c->rope.original_max_pos = 4096;
        c->rope.attention_factor = moe_yarn_mscale(32, 1.0);
    }
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 1, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    c->attn_sinks = 1;
    MOE_TRY(layer_types(path, root, c));
    MOE_TRY(moe_config_int_alias(path, root, "num_local_experts", "num_experts", 0, 128, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 4, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_num(path, root, "swiglu_alpha", 0, 1.702, -1e6, 1e6, &c->act_alpha));
    MOE_TRY(moe_json_num(path, root, "swiglu_limit", 0, 7.0, 0, 1e30, &c->act_limit));
    c->expert_act = MOE_ACT_SWIGLU_CLAMP;
    c->moe_intermediate = c->intermediate;
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_MOE;
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->norm_topk_prob = 1;
    c->moe_block = "mlp";
    c->router_names[0] = "router.weight";
    c->router_bias = 1;
    c->fused_gate_up_names[0] = "experts.gate_up_proj";
    c->fused_down_names[0] = "experts.down_proj";
    c->fused_interleaved = c->fused_transposed = c->expert_bias = 1;
    return MOE_OK;
}

const moe_arch moe_arch_gpt_oss = {"gpt_oss", parse};
