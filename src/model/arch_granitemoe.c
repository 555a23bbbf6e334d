/* arch_granitemoe.c - Granite MoE (IBM granite-3.x MoE, PowerMoE) and Granite MoE with a shared
 * expert, as transformers implements GraniteMoe / GraniteMoeShared.
 * Llama's attention with its softmax scale given by attention_multiplier; embeddings times
 * embedding_multiplier, each block's attention and FFN output times residual_multiplier before the
 * residual add, logits divided by logits_scaling. Every layer MoE: softmax over the top-k router
 * logits (the same as softmax over all, top-k, renormalised). The checkpoints keep each layer's
 * experts fused: block_sparse_moe.input_linear [E][2I][H] (gate rows, then up rows) and
 * output_linear [E][H][I], the router as router.layer; transformers 5 renames them to
 * experts.gate_up_proj / experts.down_proj and router. GraniteMoeShared adds an always-on SwiGLU of
 * width shared_intermediate_size beside the block, shared_mlp.input_linear [2S][H] + output_linear. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>

static moe_status parse_common(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {32000, 4096, 11008, 32, 32, 0, 2048, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    MOE_TRY(moe_json_num(path, root, "attention_multiplier", 0, 1.0, -1e6, 1e6, &c->attn_scale));
    MOE_TRY(moe_json_num(path, root, "embedding_multiplier", 0, 1.0, -1e6, 1e6, &c->embed_scale));
    MOE_TRY(moe_json_num(path, root, "residual_multiplier", 0, 1.0, -1e6, 1e6, &c->residual_scale));
    MOE_TRY(moe_json_num(path, root, "logits_scaling", 0, 1.0, -1e6, 1e6, &c->logits_scale));
    if (c->logits_scale == 0) return moe_fail(MOE_EINPUT, "%s: field \"logits_scaling\" must not be 0", path);
    MOE_TRY(moe_json_int32(path, root, "num_local_experts", 0, 8, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 2, 1, 65536, &c->top_k));
    c->moe_intermediate = c->intermediate;
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_MOE;
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->norm_topk_prob = 1;
    c->moe_block = "block_sparse_moe";
    c->router_names[0] = "router.layer.weight";
    c->router_names[1] = "router.weight";
    c->fused_gate_up_names[0] = "input_linear.weight";
    c->fused_down_names[0] = "output_linear.weight";
    c->fused_gate_up_names[1] = "experts.gate_up_proj";
    c->fused_down_names[1] = "experts.down_proj";
    return MOE_OK;
}

static moe_status parse_granitemoe(const char *path, const cJSON *root, moe_config *c) {
    return parse_common(path, root, c);
}

static moe_status parse_granitemoeshared(const char *path, const cJSON *root, moe_config *c) {
    MOE_TRY(parse_common(path, root, c));
    MOE_TRY(moe_json_int32(path, root, "shared_intermediate_size", 0, 0, 0, 1 << 20, &c->shared_intermediate));
    c->n_shared_experts = c->shared_intermediate > 0;
    c->shared_name = "shared_mlp";
    c->shared_at_layer = 1;
    c->shared_fused = 1;
    return MOE_OK;
}

const moe_arch moe_arch_granitemoe = {"granitemoe", parse_granitemoe};
const moe_arch moe_arch_granitemoeshared = {"granitemoeshared", parse_granitemoeshared};
