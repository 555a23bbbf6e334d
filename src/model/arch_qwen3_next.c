/* arch_qwen3_next.c - Qwen3-Next: a hybrid of gated DeltaNet linear attention (model/deltanet.h) and
 * gated full attention, with a high-sparsity MoE in every layer.
 *  - layer_types lists "linear_attention" / "full_attention" per layer; without it every
 *    full_attention_interval-th layer (default 4) is full attention.
 *  - Full attention: q_proj yields [query | gate] per head, the output is multiplied by sigmoid(gate)
 *    before o_proj; RMSNorm over each head of q and k; RoPE on the first partial_rotary_factor of each
 *    head (default 0.25).
 *  - Every RMSNorm gain (layers, final, q/k) is stored centred at zero and applied as 1 + w; the gated
 *    norm inside the linear attention is a plain gain.
 *  - MoE as Qwen2-MoE: softmax top-k (norm_topk_prob, default true) plus a shared expert scaled by
 *    sigmoid(x . w); layers chosen by decoder_sparse_step and mlp_only_layers, dense SwiGLU elsewhere.
 * Defaults are Qwen3NextConfig's (transformers 5.25). Multi-token-prediction weights ("mtp.*") of the
 * released checkpoints are not used, as in transformers. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>
#include <string.h>

static moe_status layer_types(const char *path, const cJSON *root, moe_config *c) {
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (!lt || cJSON_IsNull(lt)) {
        int every;
        MOE_TRY(moe_json_int32(path, root, "full_attention_interval", 0, 4, 1, MOE_MAX_LAYERS, &every));
        for (int i = 0; i < c->n_layers; i++) c->mixer[i] = (i + 1) % every ? MOE_MIXER_DELTANET : MOE_MIXER_ATTENTION;
        return MOE_OK;
    }
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
        return moe_fail(MOE_EINPUT, "%s: field \"layer_types\" must list one type per layer", path);
    int i = 0;
    for (const cJSON *e = lt->child; e; e = e->next, i++) {
        int lin = cJSON_IsString(e) && !strcmp(e->valuestring, "linear_attention");
        if (!lin && !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")))
            return moe_fail(MOE_EINPUT, "%s: layer_types[%d] must be \"linear_attention\" or \"full_attention\"", path, i);
        c->mixer[i] = lin ? MOE_MIXER_DELTANET : MOE_MIXER_ATTENTION;
    }
    return MOE_OK;
}

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {151936, 2048, 5632, 48, 16, 2, 32768, 1e-6, 10000};
    static const moe_common_extras x = {.head_dim = 256, .partial_rotary = 0.25};
    MOE_TRY(moe_config_common_ex(path, root, &d, &x, c));
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    c->qk_norm = MOE_QKNORM_HEAD;
    c->attn_out_gate = 1;
    c->norm_plus_one = 1;
    MOE_TRY(moe_json_int32(path, root, "linear_num_key_heads", 0, 16, 1, 4096, &c->lin_k_heads));
    MOE_TRY(moe_json_int32(path, root, "linear_num_value_heads", 0, 32, 1, 4096, &c->lin_v_heads));
    MOE_TRY(moe_json_int32(path, root, "linear_key_head_dim", 0, 128, 1, 4096, &c->lin_k_dim));
    MOE_TRY(moe_json_int32(path, root, "linear_value_head_dim", 0, 128, 1, 4096, &c->lin_v_dim));
    MOE_TRY(moe_json_int32(path, root, "linear_conv_kernel_dim", 0, 4, 1, 64, &c->lin_conv));
    if (c->lin_v_heads % c->lin_k_heads)
        return moe_fail(MOE_EINPUT, "%s: linear_num_value_heads %d is not a multiple of linear_num_key_heads %d", path,
                        c->lin_v_heads, c->lin_k_heads);
    if ((double)c->lin_v_heads * c->lin_v_dim * 2 + (double)c->lin_k_heads * c->lin_k_dim * 2 > (1 << 20))
        return moe_fail(MOE_EINPUT, "%s: linear attention projection of %d x %d key and %d x %d value heads is too large",
                        path, c->lin_k_heads, c->lin_k_dim, c->lin_v_heads, c->lin_v_dim);
    MOE_TRY(layer_types(path, root, c));
    MOE_TRY(moe_json_int32(path, root, "num_experts", 0, 512, 0, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 10, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_int32(path, root, "moe_intermediate_size", 0, 512, 1, 1 << 20, &c->moe_intermediate));
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 1, &c->norm_topk_prob));
    MOE_TRY(moe_config_qwen_sparse_layers(path, root, c));
    MOE_TRY(moe_json_int32(path, root, "shared_expert_intermediate_size", 0, 512, 0, 1 << 20, &c->shared_intermediate));
    c->shared_gate = c->shared_intermediate > 0;
    c->n_shared_experts = c->shared_intermediate > 0;
    c->shared_name = "shared_expert";
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    c->unused_ok[0] = "mtp.";
    return MOE_OK;
}

const moe_arch moe_arch_qwen3_next = {"qwen3_next", parse};
