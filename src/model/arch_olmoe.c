/* arch_olmoe.c - OLMoE: every layer MoE, softmax top-k without renormalisation by default, RMSNorm over
 * the whole q and k projections (not per head), optional clamping of q, k, v (clip_qkv). */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>
#include <math.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {50304, 2048, 2048, 16, 16, 16, 4096, 1e-5, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    if (c->hidden % c->n_heads)
        return moe_fail(MOE_EINPUT, "%s: hidden_size %d is not divisible by num_attention_heads %d", path, c->hidden, c->n_heads);
    c->head_dim = c->hidden / c->n_heads; /* OLMoE ignores any head_dim key */
    c->rope.dim = c->head_dim;
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
    MOE_TRY(moe_config_int_alias(path, root, "num_experts", "num_local_experts", 0, 64, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 8, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_bool(path, root, "norm_topk_prob", 0, 0, &c->norm_topk_prob));
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    MOE_TRY(moe_json_num(path, root, "clip_qkv", 0, 0, 1e-30, 1e30, &c->clip_qkv));
    c->o_bias = c->qkv_bias;
    c->qk_norm = MOE_QKNORM_FULL;
    c->moe_intermediate = c->intermediate;
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_MOE;
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    return MOE_OK;
}

const moe_arch moe_arch_olmoe = {"olmoe", parse};
