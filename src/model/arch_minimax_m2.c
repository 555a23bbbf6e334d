/* arch_minimax_m2.c - MiniMax-M2 (MiniMaxAI), as transformers implements MiniMaxM2.
 * Attention: GQA with RMSNorm over the whole q and k projections (as OLMoE), RoPE on the first
 * rotary_dim dimensions of each head (released checkpoints give "rotary_dim"; transformers 5 writes it
 * as partial_rotary_factor), pairs on halves. Every layer MoE, Mixtral's naming (w1, w3, w2 under
 * block_sparse_moe): sigmoid scores plus e_score_correction_bias for the choice only, plain top-k,
 * weights renormalised over the chosen k (DeepSeek-V3's router with one group). */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>

static moe_status parse(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {200064, 3072, 1536, 62, 48, 8, 196608, 1e-6, 5e6};
    static const moe_common_extras x = {.head_dim = 128, .partial_rotary = 1.0};
    MOE_TRY(moe_config_common_ex(path, root, &d, &x, c));
    int rotary_dim;
    MOE_TRY(moe_json_int32(path, root, "rotary_dim", 0, 0, 2, 65536, &rotary_dim));
    if (rotary_dim && c->rope.partial < 0) /* transformers: partial_rotary_factor = rotary_dim / head_dim */
        c->rope.dim = (int)(c->head_dim * ((double)rotary_dim / c->head_dim));
    c->qk_norm = MOE_QKNORM_FULL;
    MOE_TRY(moe_config_int_alias(path, root, "num_local_experts", "num_experts", 0, 256, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 8, 1, 65536, &c->top_k));
    c->moe_intermediate = c->intermediate;
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_MOE;
    c->norm_topk_prob = 1;
    c->n_group = c->topk_group = 1;
    c->has_score_bias = 1;
    snprintf(c->router, sizeof c->router, "deepseek_v3");
    c->moe_block = "block_sparse_moe";
    c->expert_gate = "w1"; c->expert_up = "w3"; c->expert_down = "w2";
    c->score_bias_names[0] = "e_score_correction_bias";
    return MOE_OK;
}

const moe_arch moe_arch_minimax_m2 = {"minimax_m2", parse};
