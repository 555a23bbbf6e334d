/* tconfig.h - everything `moe train` can be told: the model's shape, the router and its losses, the
 * optimiser and the schedule. One table of fields (tconfig.c) drives the command-line flags, the JSON
 * config file (--config), the train.json saved with every checkpoint and --resume, so a new option
 * is one line. Precedence: defaults < --preset < --config file < flags. */
#ifndef MOE_TRAIN_TCONFIG_H
#define MOE_TRAIN_TCONFIG_H
#include "moe.h"
#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct moe_tconfig {
    /* model */
    int vocab, d_model, n_layers, n_heads, n_kv_heads, head_dim, seq_len;
    int d_ff;             /* width of dense FFN layers */
    int n_dense_layers;   /* the first layers use a dense FFN (DeepSeek's first_k_dense_replace) */
    int n_experts;        /* 0 = a dense model */
    int top_k, d_expert;
    int n_shared;         /* always-on shared experts, each d_expert wide, fused into one FFN */
    int qk_norm;          /* RMSNorm over each head of q and k (Qwen3) */
    double rope_theta, rms_eps, init_std;
    /* router */
    char router[32];
    int norm_topk;        /* renormalise top-k weights */
    double capacity_factor, top_p, routed_scaling, bias_rate;
    int slots, aoe_rank;
    double balance_loss, z_loss, seq_balance_loss;
    char layout[32];      /* "auto", "qwen3_moe", "mixtral", "dots1", "llama" (dense) */
    char tokenizer[512];  /* tokenizer.json the data is encoded with; empty: bytes (vocab 256) */
    /* optimisation */
    int batch, steps, warmup, eval_every, eval_batches, save_every;
    double lr, min_lr, weight_decay, beta1, beta2, adam_eps, grad_clip, val_fraction;
    int64_t seed;
} moe_tconfig;

/* Field table entry. type: 'i' int, 'l' int64, 'd' double, 's' char[32], 'p' a path, char[512]. */
typedef struct moe_tfield {
    const char *name;     /* flag name with dashes; the JSON key has underscores */
    char type;
    size_t offset;
    double min, max;
    const char *help;
} moe_tfield;

extern const moe_tfield moe_tconfig_fields[];
extern const int moe_tconfig_n_fields;

void moe_tconfig_defaults(moe_tconfig *c);
/* "tiny" or "small"; fails naming the preset. */
moe_status moe_tconfig_preset(moe_tconfig *c, const char *name);
/* Apply the keys of a JSON object (unknown keys are errors naming them). */
moe_status moe_tconfig_apply_json(moe_tconfig *c, const char *path, const cJSON *obj);
moe_status moe_tconfig_load_file(moe_tconfig *c, const char *path);
/* Set one field from its flag name and text value (used by the CLI). */
moe_status moe_tconfig_set(moe_tconfig *c, const char *name, const char *value);
/* Fill derived values (head_dim, kv heads, layout), then check everything; messages name the field. */
moe_status moe_tconfig_finish(moe_tconfig *c);
/* The whole config as a JSON object (caller deletes). */
cJSON *moe_tconfig_to_json(const moe_tconfig *c);
int moe_tconfig_is_moe_layer(const moe_tconfig *c, int layer);
struct moe_router_params;
/* The router parameters of a config's MoE layers, and the rows of their gate matrix. */
void moe_tconfig_router_params(const moe_tconfig *c, struct moe_router_params *p);
int moe_tconfig_n_logits(const moe_tconfig *c);
#endif
