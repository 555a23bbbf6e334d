/* arch.h - the architecture registry. Each family is one file (arch_*.c) that reads its model_type's
 * config.json keys, with that family's Hugging Face defaults, into a moe_config; everything after
 * that (weights binding, forward pass) is shared. Adding a family: one file plus one line in
 * arch_registry.c. */
#ifndef MOE_MODEL_ARCH_H
#define MOE_MODEL_ARCH_H
#include "model/config.h"

typedef struct moe_arch {
    const char *model_type;
    moe_status (*parse)(const char *path, const cJSON *root, moe_config *c);
} moe_arch;

const moe_arch *moe_arch_find(const char *model_type);
/* Comma-separated list of supported model types, for messages. */
const char *moe_arch_names(void);

/* Defaults of the keys every family shares; each family passes its Hugging Face class defaults. */
typedef struct moe_common_defaults {
    int vocab, hidden, intermediate, n_layers, n_heads, n_kv_heads, max_pos;
    double rms_eps, rope_theta;
} moe_common_defaults;

/* What some families add to the common keys (moe_config_common_ex; 0 means none). The rope features
 * beyond whole-head default/linear/llama3/YaRN are rejected for families that do not implement them. */
typedef struct moe_common_extras {
    int head_dim;             /* class default of head_dim when it is not hidden_size / num_attention_heads */
    double partial_rotary;    /* partial_rotary_factor when the file gives none; 0: whole heads only */
    int longrope;             /* rope type "longrope" (phimoe's form) */
} moe_common_extras;

/* Shared parsing helpers used by the arch files. */
moe_status moe_config_common(const char *path, const cJSON *root, const moe_common_defaults *d, moe_config *c);
moe_status moe_config_common_ex(const char *path, const cJSON *root, const moe_common_defaults *d,
                                  const moe_common_extras *caps, moe_config *c);
moe_status moe_config_rope(const char *path, const cJSON *root, moe_config *c);
/* An integer field with two names: transformers 5 accepts either spelling of some keys (its config
 * classes' attribute_map, e.g. qwen3_moe's num_experts / num_local_experts). Reads whichever is present;
 * both present with different values is an error naming both. */
moe_status moe_config_int_alias(const char *path, const cJSON *root, const char *key, const char *alias, int required,
                                int def, int min, int max, int *out);
/* YaRN's mscale: 0.1 * m * ln(scale) + 1, or 1 for scale <= 1. */
double moe_yarn_mscale(double scale, double m);
/* Read "mlp_only_layers"/"decoder_sparse_step" (Qwen) into ffn_kind. */
moe_status moe_config_qwen_sparse_layers(const char *path, const cJSON *root, moe_config *c);
/* Reject keys whose non-default values we do not implement: key must be absent, null or equal to ok. */
moe_status moe_config_require_bool(const char *path, const cJSON *root, const char *key, int ok);
moe_status moe_config_require_str(const char *path, const cJSON *root, const char *key, const char *ok);
/* The moe-specific keys ("moe_router", "moe_router_params", "moe_shared_expert_intermediate_size"),
 * read after every family's own keys (config_moe.c). */
moe_status moe_config_moe_keys(const char *path, const cJSON *root, moe_config *c);
/* Sliding window for all layers from "sliding_window" (null or absent = none). */
moe_status moe_config_sliding_all(const char *path, const cJSON *root, moe_config *c);
#endif
