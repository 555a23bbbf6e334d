/* arch_ernie4_5_moe.c - ERNIE-4.5 MoE (Baidu; the "-PT" checkpoints), as transformers implements
 * Ernie4_5_Moe. Llama's attention with RoPE on interleaved pairs; tied embeddings by default. Layer i
 * is MoE when moe_layer_start_index <= i <= moe_layer_end_index (-1: the last layer) and
 * (i + 1) % moe_layer_interval == 0, dense otherwise. Routing: p = softmax(logits); the top-k of
 * p + e_score_correction_bias (kept under mlp.moe_statics, shape [1][E], and a parameter rather than a
 * buffer) chooses the experts; their weights are p / max(sum of the chosen p, moe_norm_min). The
 * moe_num_shared_experts always-on experts are one FFN of width moe_intermediate_size times their
 * number. use_bias (biases on every projection and the head) is not implemented. */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {103424, 2560, 12288, 28, 20, 4, 131072, 1e-5, 500000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(moe_json_bool(path, root, "tie_word_embeddings", 0, 1, &c->tie_embeddings));
    MOE_TRY(moe_config_require_bool(path, root, "use_bias", 0));
    c->rope.layout = MOE_ROPE_PAIRS_INTERLEAVED;
    MOE_TRY(moe_config_int_alias(path, root, "moe_num_experts", "num_experts", 0, 64, 1, 65536, &c->n_experts));
    MOE_TRY(moe_config_int_alias(path, root, "moe_k", "num_experts_per_tok", 0, 6, 1, 65536, &c->top_k));
    MOE_TRY(moe_json_int32(path, root, "moe_intermediate_size", 0, 1536, 1, 1 << 20, &c->moe_intermediate));
    MOE_TRY(moe_json_int32(path, root, "moe_num_shared_experts", 0, 2, 0, 65536, &c->n_shared_experts));
    if ((int64_t)c->moe_intermediate * c->n_shared_experts > 1 << 20)
        return moe_fail(MOE_EINPUT, "%s: moe_intermediate_size %d x moe_num_shared_experts %d is too large for the shared experts",
                        path, c->moe_intermediate, c->n_shared_experts);
    c->shared_intermediate = c->moe_intermediate * c->n_shared_experts;
    int start, end, interval;
    MOE_TRY(moe_json_int32(path, root, "moe_layer_start_index", 0, 1, -(1 << 20), 1 << 20, &start));
    MOE_TRY(moe_json_int32(path, root, "moe_layer_end_index", 0, -1, -(1 << 20), 1 << 20, &end));
    MOE_TRY(moe_json_int32(path, root, "moe_layer_interval", 0, 1, 1, 1 << 20, &interval));
    if (end == -1) end = c->n_layers - 1;
    for (int i = 0; i < c->n_layers; i++)
        c->ffn_kind[i] = (i + 1) % interval == 0 && i >= start && i <= end ? MOE_FFN_MOE : MOE_FFN_DENSE;
    MOE_TRY(moe_json_num(path, root, "moe_norm_min", 0, 1e-12, 0, 1e6, &c->norm_min));
    snprintf(c->router, sizeof c->router, "softmax_topk");
    c->norm_topk_prob = 1;
    c->has_score_bias = 1;
    c->moe_block = "mlp";
    c->expert_gate = "gate_proj"; c->expert_up = "up_proj"; c->expert_down = "down_proj";
    c->shared_name = "shared_experts";
    c->score_bias_names[0] = "moe_statics.e_score_correction_bias";
    c->score_bias_names[1] = "gate.moe_statics.e_score_correction_bias";
    return MOE_OK;
}

const moe_arch moe_arch_ernie4_5_moe = {"ernie4_5_moe", parse};
