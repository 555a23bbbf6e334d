/* model.h - a loaded model: its config, the weights bound to each block, the expert store. */
#ifndef MOE_MODEL_MODEL_H
#define MOE_MODEL_MODEL_H
#include "io/weights.h"
#include "model/config.h"
#include "model/rope.h"
#include "moe/moe_layer.h"

typedef struct moe_attn_weights {
    /* grouped-query attention */
    moe_tensor wq, wk, wv, wo;
    float *bq, *bk, *bv, *bo;
    float *q_norm, *k_norm;     /* per-head [head_dim] or full [H*head_dim] / [KV*head_dim] */
    float *sinks;               /* [H] attention sink logits (gpt-oss), or NULL */
    /* multi-head latent attention: wq is used when q_lora_rank == 0 */
    moe_tensor wq_a, wq_b, wkv_a, wkv_b;
    float *bq_a, *bkv_a;
    float *q_a_norm, *kv_a_norm;
} moe_attn_weights;

/* gated DeltaNet linear attention (Qwen3-Next), see model/deltanet.h */
typedef struct moe_deltanet_weights {
    moe_tensor in_qkvz;         /* [2*Hk*dk + 2*Hv*dv][hidden], per key head: q, k, v, z of its value heads */
    moe_tensor in_ba;           /* [2*Hv][hidden], per key head: b, a of its value heads */
    moe_tensor out;             /* [hidden][Hv*dv] */
    float *conv;                /* [2*Hk*dk + Hv*dv][kernel] depthwise causal convolution */
    float *a_log, *dt_bias;     /* [Hv] */
    float *norm;                /* [dv] gain of the gated RMSNorm */
} moe_deltanet_weights;

typedef struct moe_block {
    float *attn_norm, *ffn_norm;
    float *attn_norm_b, *ffn_norm_b;   /* LayerNorm biases (phimoe), or NULL */
    moe_mixer_kind mixer;
    moe_attn_weights attn;
    moe_deltanet_weights lin;
    moe_ffn_kind ffn_kind;
    moe_ffn_weights dense;
    moe_layer moe;
} moe_block;

struct moe_model {
    moe_config cfg;
    moe_weights *weights;
    moe_tensor embed, lm_head;
    float *final_norm, *final_norm_b;
    float *lm_head_b;      /* [vocab] or NULL */
    moe_block *blocks;
    moe_store *store;
    moe_st_file *predictor; /* fitted cross-layer predictor (moe/predictor.h), or NULL */
    moe_rope rope;
    moe_model_info info;
    char dtype_name[16];
    struct moe_route_policy *policy; /* dynamic routing and steering (moe_model_set_routing), or NULL */
    uint64_t route_counts[2];        /* MoE layer-tokens run and expert assignments executed for them */
    void **owned;          /* f32 copies of small vectors (norms, biases) */
    int n_owned, cap_owned;
};

/* moe_model_load with the weight files read into memory (in_memory != 0) instead of mapped. */
moe_status moe_model_load_mem(const char *dir, int in_memory, moe_model **out);

/* With the weights in memory: rewrite the bf16 matrices that only moe_matmul reads into 4-row panels
 * for decode (core/packed.h; model/pack_decode.c). */
moe_status moe_model_pack_decode(moe_model *m);

/* Memory the model frees with itself (moe_alloc'd). Frees p on failure. */
moe_status moe_model_keep(moe_model *m, void *p);
/* Layer l's experts from fused tensors the executor cannot view in place (gpt-oss: alternating gate/up,
 * [E][in][out] floats, biases), repacked at load (model/experts_repack.c). */
moe_status moe_bind_fused_repacked(moe_model *m, int l, const char *gate_up, const char *down);

/* Load weights for a parsed config from an open weights table (used by moe_model_load). */
moe_status moe_model_bind(moe_model *m);
#endif
