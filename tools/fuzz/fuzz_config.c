/* fuzz_config.c - arbitrary bytes as config.json: moe_json_parse, then moe_config_parse for
 * whatever model_type the input names, then the rotary tables the config asks for. A config that
 * parses must keep the promises the forward pass relies on (checked below); one that does not must
 * fail with one message naming the file. */
#include "fuzz_common.h"
#include "io/json.h"
#include "model/config.h"
#include "model/rope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = NULL;
    moe_status st = moe_json_parse("config.json", (const char *)data, size, &root);
    if (st != MOE_OK) {
        FUZZ_ASSERT(root == NULL);
        fuzz_check_message("config.json");
        return 0;
    }
    moe_config *c = malloc(sizeof *c); /* ~10 KB: keep it off the fuzzer's stack */
    if (!c) { cJSON_Delete(root); return 0; }
    st = moe_config_parse("config.json", root, c);
    if (st != MOE_OK) {
        fuzz_check_message("config.json");
    } else {
        FUZZ_ASSERT(c->vocab >= 1 && c->hidden >= 1 && c->n_layers >= 1 && c->n_layers <= MOE_MAX_LAYERS);
        FUZZ_ASSERT(c->n_heads >= 1 && c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0 && c->head_dim >= 1);
        FUZZ_ASSERT(c->rope.dim >= 2 && c->rope.dim % 2 == 0);
        FUZZ_ASSERT(c->mla || c->rope.dim <= c->head_dim);
        FUZZ_ASSERT(c->shared_intermediate >= 0 && c->intermediate >= 1);
        int any_moe = 0;
        for (int l = 0; l < c->n_layers; l++) any_moe |= c->ffn_kind[l] == MOE_FFN_MOE;
        if (any_moe) {
            FUZZ_ASSERT(c->n_experts >= 1 && c->top_k >= 1 && c->top_k <= c->n_experts && c->moe_intermediate >= 1);
            /* per-expert tensor names, or a family whose experts are always fused (granite) */
            FUZZ_ASSERT(c->router[0] && c->moe_block &&
                        ((c->expert_gate && c->expert_up && c->expert_down) || c->fused_gate_up_names[0]));
            FUZZ_ASSERT(c->shared_intermediate == 0 || c->shared_name);
            FUZZ_ASSERT(c->n_group == 0 || (c->n_experts % c->n_group == 0 && c->topk_group >= 1 &&
                                            c->topk_group <= c->n_group));
        }
        moe_rope r;
        memset(&r, 0, sizeof r);
        if (moe_rope_init(&r, &c->rope) == MOE_OK) moe_rope_free(&r);
    }
    free(c);
    cJSON_Delete(root);
    return 0;
}
