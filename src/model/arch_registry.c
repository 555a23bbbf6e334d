/* arch_registry.c - the list of supported model_type values. */
#include "model/arch.h"
#include <string.h>

extern const moe_arch moe_arch_mixtral, moe_arch_qwen2_moe, moe_arch_qwen3_moe, moe_arch_olmoe,
    moe_arch_deepseek_v2, moe_arch_deepseek_v3, moe_arch_llama, moe_arch_mistral, moe_arch_qwen2, moe_arch_dots1,
    moe_arch_glm4_moe, moe_arch_minimax_m2, moe_arch_granitemoe, moe_arch_granitemoeshared, moe_arch_ernie4_5_moe,
    moe_arch_phimoe, moe_arch_gpt_oss;
extern const moe_arch moe_arch_qwen3_next, moe_arch_llama4_text, moe_arch_llama4;

static const moe_arch *const k_archs[] = {
    &moe_arch_mixtral, &moe_arch_qwen2_moe, &moe_arch_qwen3_moe, &moe_arch_olmoe, &moe_arch_deepseek_v2,
    &moe_arch_deepseek_v3, &moe_arch_llama, &moe_arch_mistral, &moe_arch_qwen2, &moe_arch_dots1,
    &moe_arch_glm4_moe, &moe_arch_minimax_m2, &moe_arch_granitemoe, &moe_arch_granitemoeshared, &moe_arch_ernie4_5_moe,
    &moe_arch_phimoe, &moe_arch_gpt_oss,
    &moe_arch_qwen3_next, &moe_arch_llama4_text, &moe_arch_llama4,
};

const moe_arch *moe_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof k_archs / sizeof *k_archs; i++)
        if (strcmp(k_archs[i]->model_type, model_type) == 0) return k_archs[i];
    return NULL;
}

const char *moe_arch_names(void) {
    static char buf[512];
    if (!buf[0])
        for (size_t i = 0; i < sizeof k_archs / sizeof *k_archs; i++) {
            if (i) strcat(buf, ", ");
            strcat(buf, k_archs[i]->model_type);
        }
    return buf;
}
