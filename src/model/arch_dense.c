/* arch_dense.c - dense Llama, Mistral and Qwen2: the same blocks with an ordinary SwiGLU FFN in
 * every layer (the starting point for sparse upcycling). */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <stdio.h>
#include <string.h>

static void all_dense(moe_config *c) {
    for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_DENSE;
}

static moe_status parse_llama(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {32000, 4096, 11008, 32, 32, 0, 2048, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    MOE_TRY(moe_config_require_bool(path, root, "mlp_bias", 0));
    int tp;
    MOE_TRY(moe_json_int32(path, root, "pretraining_tp", 0, 1, 1, 1 << 20, &tp));
    all_dense(c);
    return MOE_OK;
}

static moe_status parse_mistral(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {32000, 4096, 14336, 32, 32, 8, 131072, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    /* absent means the class default 4096; null means full attention */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    int w = 4096;
    if (sw && cJSON_IsNull(sw)) w = 0;
    else MOE_TRY(moe_json_int32(path, root, "sliding_window", 0, 4096, 1, 1 << 30, &w));
    for (int i = 0; i < c->n_layers; i++) c->sliding_window[i] = w;
    all_dense(c);
    return MOE_OK;
}

static moe_status parse_qwen2(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {151936, 4096, 22016, 32, 32, 0, 32768, 1e-6, 10000};
    MOE_TRY(moe_config_common(path, root, &d, c));
    c->qkv_bias = 1;
    int use_sw, w = 0, max_window_layers;
    MOE_TRY(moe_json_bool(path, root, "use_sliding_window", 0, 0, &use_sw));
    if (use_sw) MOE_TRY(moe_json_int32(path, root, "sliding_window", 0, 4096, 1, 1 << 30, &w));
    MOE_TRY(moe_json_int32(path, root, "max_window_layers", 0, 28, 0, 1 << 20, &max_window_layers));
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    for (int i = 0; i < c->n_layers; i++) c->sliding_window[i] = w && i >= max_window_layers ? w : 0;
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
            return moe_fail(MOE_EINPUT, "%s: field \"layer_types\" must list one type per layer", path);
        int i = 0;
        for (const cJSON *e = lt->child; e; e = e->next, i++) {
            int sliding = cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention");
            if (!sliding && !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")))
                return moe_fail(MOE_EINPUT, "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"", path, i);
            if (sliding && !w)
                return moe_fail(MOE_EINPUT, "%s: layer_types[%d] is sliding but use_sliding_window is off", path, i);
            c->sliding_window[i] = sliding ? w : 0;
        }
    }
    all_dense(c);
    return MOE_OK;
}

const moe_arch moe_arch_llama = {"llama", parse_llama};
const moe_arch moe_arch_mistral = {"mistral", parse_mistral};
const moe_arch moe_arch_qwen2 = {"qwen2", parse_qwen2};
