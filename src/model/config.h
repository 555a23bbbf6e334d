/* config.h - everything the forward pass needs to know about a model, read from config.json.
 * An architecture file (arch_*.c) turns one model_type's keys, with that family's Hugging Face
 * defaults for absent keys, into this struct; the rest of the engine never sees model_type. */
#ifndef MOE_MODEL_CONFIG_H
#define MOE_MODEL_CONFIG_H
#include <cjson/cJSON.h>
#include "moe.h"

#define MOE_MAX_LAYERS 1024
#define MOE_ROPE_MAX_FACTORS 512   /* longrope: rotated dimensions up to 1024 */

typedef enum { MOE_ROPE_PAIRS_HALF = 0, MOE_ROPE_PAIRS_INTERLEAVED = 1 } moe_rope_layout;
/* q/k norms: RMSNorm with a gain per head (Qwen3) or over the whole projection (OLMoE) before RoPE, or
 * without a gain per head after RoPE on RoPE layers only (Llama 4's "L2 norm") */
typedef enum { MOE_QKNORM_NONE = 0, MOE_QKNORM_HEAD, MOE_QKNORM_FULL, MOE_QKNORM_HEAD_UNIT_POST } moe_qknorm;
typedef enum { MOE_FFN_DENSE = 0, MOE_FFN_MOE = 1 } moe_ffn_kind;
typedef enum { MOE_NORM_RMS = 0, MOE_NORM_LAYER = 1 } moe_norm_kind;
/* the token mixer of a layer: softmax attention over a KV cache, or gated DeltaNet linear attention
 * over a recurrent state (Qwen3-Next's "linear_attention" layers) */
typedef enum { MOE_MIXER_ATTENTION = 0, MOE_MIXER_DELTANET = 1 } moe_mixer_kind;

typedef struct moe_rope_config {
    int dim;                  /* rotated dimensions per head */
    double theta;
    moe_rope_layout layout;   /* which coordinates form a rotation pair */
    /* scaling: "default", "linear", "llama3", "yarn", "longrope" */
    char type[16];
    double factor, low_freq_factor, high_freq_factor, beta_fast, beta_slow, mscale, mscale_all_dim;
    double attention_factor;  /* multiplies cos and sin (yarn) */
    int original_max_pos;
    int truncate;             /* yarn: round the correction range to integers */
    double partial;           /* partial_rotary_factor as the file gives it, or -1 when absent */
    /* longrope (phimoe): frequencies divided by short_factor (transformers' phimoe never switches to
     * long_factor); cos and sin times short_mscale up to original_max_pos, long_mscale beyond */
    float short_factor[MOE_ROPE_MAX_FACTORS];
    int n_short_factor;
    double short_mscale, long_mscale;
} moe_rope_config;

typedef struct moe_config {
    char model_type[32];
    char config_path[512];    /* for messages */
    int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim;
    int max_pos;
    double rms_eps;
    int tie_embeddings;
    int lm_head_bias;                      /* phimoe, ernie4_5_moe use_bias: lm_head.bias */
    moe_norm_kind norm;                    /* RMSNorm, or LayerNorm with a bias (phimoe) */
    /* granite's multipliers (1 when a family has none) */
    double embed_scale;                    /* embeddings times this */
    double residual_scale;                 /* each block's attention and FFN output times this before the add */
    double logits_scale;                   /* logits divided by this */
    int bos_token_id;                      /* -1 if none */
    int n_eos, eos_token_id[8];            /* generation stops at any of these */

    /* attention */
    int qkv_bias, o_bias;
    moe_qknorm qk_norm;
    double clip_qkv;          /* 0 = off */
    double attn_scale;        /* softmax scale, usually head_dim^-0.5 */
    int attn_sinks;           /* gpt_oss: a learned logit per head joins each softmax (self_attn.sinks) */
    int sliding_window[MOE_MAX_LAYERS]; /* 0 = full attention */
    moe_rope_config rope;

    int attn_out_gate;        /* q_proj yields [query | gate] per head; the output is o * sigmoid(gate) (Qwen3-Next) */
    int norm_plus_one;        /* RMSNorm gains are stored as w and applied as 1 + w (Qwen3-Next) */
    /* Llama 4: layers without RoPE, chunked local attention, temperature tuning of the NoPE layers'
     * queries: q *= 1 + temp_scale * log1p(floor((pos + 1) / temp_floor)) */
    unsigned char nope[MOE_MAX_LAYERS];
    int attn_chunk[MOE_MAX_LAYERS];        /* 0 = off; else keys of the query's own chunk of this size */
    int temp_tuning;
    double temp_scale, temp_floor;

    /* token mixer per layer; gated DeltaNet dimensions (Qwen3-Next) */
    moe_mixer_kind mixer[MOE_MAX_LAYERS];
    int lin_k_heads, lin_v_heads, lin_k_dim, lin_v_dim, lin_conv;

    /* multi-head latent attention (DeepSeek); mla == 0 for ordinary GQA */
    int mla, q_lora_rank, kv_lora_rank, qk_nope_dim, qk_rope_dim, v_head_dim;

    /* feed-forward */
    int intermediate;                      /* dense FFN width */
    moe_ffn_kind ffn_kind[MOE_MAX_LAYERS];
    int n_experts, top_k, moe_intermediate;
    int n_stored_experts;                  /* merged checkpoints ("moe_expert_slots"): experts in the files, which
                                              the n_experts router slots share (model/model.c); 0: n_experts */
    int n_shared_experts;                  /* count reported by info */
    int shared_intermediate;               /* width of the always-on expert FFN (0 = none) */
    int shared_gate;                       /* qwen2_moe: scale shared output by sigmoid(x . w) */

    /* routing */
    char router[32];                       /* registry name: "softmax_topk", "deepseek_v2", "deepseek_v3" */
    int norm_topk_prob;
    double routed_scaling;
    int n_group, topk_group;
    int group_limited;                     /* deepseek_v2 topk_method == group_limited_greedy */
    int has_score_bias;                    /* deepseek_v3 e_score_correction_bias */
    double norm_min;                       /* ernie: renormalise by max(sum of the chosen, norm_min) */
    double jitter_eps;                     /* phimoe's sparsemixer: router_jitter_noise */
    /* routers of the zoo, from the moe-specific keys "moe_router" / "moe_router_params" (config_moe.c) */
    double capacity_factor, top_p;
    int slots, router_rank;
    uint64_t router_seed;

    /* tensor naming: "{L}" stands for the layer index, "{E}" for the expert index */
    const char *moe_block;                 /* "block_sparse_moe" or "mlp" */
    const char *expert_gate, *expert_up, *expert_down;   /* "w1","w3","w2" or "gate_proj", ... */
    const char *shared_name;               /* "shared_expert" or "shared_experts" */
    /* Names inside the MoE block where a family differs from "gate.weight", "gate.e_score_correction_bias"
     * and the fused "experts.gate_up_proj" / "experts.down_proj": NULL-terminated candidates, tried in
     * order (the original checkpoints' spelling and the one transformers 5 writes). Unset: the defaults. */
    const char *router_names[3];
    const char *score_bias_names[3];       /* [n_experts] or [1][n_experts] */
    const char *fused_gate_up_names[3];    /* [E][2I][H], gate rows first; fused_down_names[i] goes with it */
    const char *fused_down_names[3];       /* [E][H][I] */
    /* gpt-oss's fused experts: gate and up alternate (gate_up_proj column or row 2i is gate i, 2i+1 up i),
     * float tensors are stored for x . W ([E][H][2I] and [E][I][H]; block types keep [out][in] rows), and
     * each fused tensor has a bias "<name>_bias" ([E][2I] alternating, [E][H]); model/experts_repack.c */
    int fused_interleaved, fused_transposed, expert_bias;
    int router_bias;                       /* the router's "<name>.bias" [n_experts] beside its ".weight" */
    int expert_act;                        /* moe_act_kind of the routed experts (0: SwiGLU) */
    double act_alpha, act_limit;           /* MOE_ACT_SWIGLU_CLAMP's alpha and limit */
    int shared_at_layer;                   /* shared FFN at model.layers.L.<shared_name>, not inside the block */
    int shared_fused;                      /* shared FFN as input_linear [2S][H] (gate rows first) + output_linear */
    int experts_in_out;                    /* fused experts stored [in][out]: gate_up_proj [E][hidden][2 I],
                                              down_proj [E][I][hidden] (Llama 4) */
    int expert_input_weighted;             /* the routing weight multiplies the expert's input, not its
                                              output (Llama 4) */
    const char *prefix;                    /* before every tensor name ("language_model." in Llama 4's
                                              multimodal checkpoints), or NULL */
    const char *ffn_name;                  /* a layer's FFN module: NULL means "mlp" ("feed_forward": Llama 4) */
    const char *unused_ok[2];              /* prefixes of tensors that are expected but not used (MTP heads,
                                              a vision tower): no warning */
} moe_config;

/* Parse config.json in dir. Unknown model_type or unsupported values are errors naming the field. */
moe_status moe_config_load(const char *dir, moe_config *c);
/* Parse from an already-read JSON tree (fuzzing, tests). */
moe_status moe_config_parse(const char *path, const cJSON *root, moe_config *c);
#endif
