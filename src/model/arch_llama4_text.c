/* arch_llama4_text.c - Llama 4 (Scout, Maverick): the text model, model_type "llama4_text"
 * (Llama4ForCausalLM), and the text part of the released multimodal checkpoints, model_type "llama4"
 * (Llama4ForConditionalGeneration: keys under "text_config", tensors under "language_model."; the vision
 * tower and projector are not used).
 *  - MoE on the layers of moe_layers (default: every interleave_moe_layer_step-th layer, the last of each
 *    step), a dense SwiGLU of intermediate_size_mlp elsewhere. The router (router_sigmoid_topk.c) takes
 *    the top-k logits and weighs each chosen expert by sigmoid(logit); the weight multiplies the
 *    expert's INPUT (transformers' Llama4TextMoe: routed_in = x * score), not its output. Every token also
 *    runs the shared expert (width intermediate_size, like the routed ones). The routed experts are
 *    stored fused and [in][out] (gate_up_proj [E][hidden][2 I], gate columns first; down_proj
 *    [E][I][hidden]); model.c transposes them once at load.
 *  - RoPE on pairs of adjacent coordinates; the layers with no_rope_layers[i] == 0 (default: every
 *    no_rope_layer_interval-th, the "NoPE" layers) skip it. layer_types (default: RoPE layers
 *    "chunked_attention" when attention_chunk_size is set, NoPE layers "full_attention") says which layers
 *    attend only within their chunk of attention_chunk_size positions.
 *  - use_qk_norm: q and k of RoPE layers get an RMSNorm without a gain after RoPE.
 *  - attn_temperature_tuning: NoPE layers scale q by 1 + attn_scale * log1p(floor((pos + 1) / floor_scale)).
 * Defaults are Llama4TextConfig's (transformers 5.25). */
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A list of integers in [lo, hi], or absent / null: *n = -1 (an empty list gives *n = 0). */
static moe_status int_list(const char *path, const cJSON *root, const char *key, int lo, int hi, int *out, int cap,
                           int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    *n = -1;
    if (!a || cJSON_IsNull(a)) return MOE_OK;
    if (!cJSON_IsArray(a)) return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be a list", path, key);
    *n = 0;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < lo || e->valuedouble > hi)
            return moe_fail(MOE_EINPUT, "%s: field \"%s\" must hold integers in [%d, %d]", path, key, lo, hi);
        if (*n == cap) return moe_fail(MOE_EINPUT, "%s: field \"%s\" has more than %d entries", path, key, cap);
        out[(*n)++] = (int)e->valuedouble;
    }
    return MOE_OK;
}

static moe_status parse_text(const char *path, const cJSON *root, moe_config *c) {
    static const moe_common_defaults d = {202048, 5120, 8192, 48, 40, 8, 131072, 1e-5, 500000};
    static const moe_common_extras x = {.head_dim = 128};
    int list[MOE_MAX_LAYERS + 1], n;
    MOE_TRY(moe_config_common_ex(path, root, &d, &x, c));
    c->rope.layout = MOE_ROPE_PAIRS_INTERLEAVED;
    MOE_TRY(moe_json_bool(path, root, "attention_bias", 0, 0, &c->qkv_bias));
    c->o_bias = c->qkv_bias;
    /* intermediate_size is the experts' (and the shared expert's) width, intermediate_size_mlp the dense one */
    c->moe_intermediate = c->intermediate;
    c->shared_intermediate = c->intermediate;
    MOE_TRY(moe_json_int32(path, root, "intermediate_size_mlp", 0, 16384, 1, 1 << 20, &c->intermediate));
    MOE_TRY(moe_json_int32(path, root, "num_local_experts", 0, 16, 1, 65536, &c->n_experts));
    MOE_TRY(moe_json_int32(path, root, "num_experts_per_tok", 0, 1, 1, 65536, &c->top_k));
    /* an explicit moe_layers list, even an empty one, overrides interleave_moe_layer_step */
    MOE_TRY(int_list(path, root, "moe_layers", 0, 1 << 30, list, MOE_MAX_LAYERS + 1, &n));
    if (n >= 0) {
        for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = MOE_FFN_DENSE;
        for (int i = 0; i < n; i++) {
            if (list[i] >= c->n_layers)
                return moe_fail(MOE_EINPUT, "%s: moe_layers[%d] = %d is not a layer (%d layers)", path, i, list[i], c->n_layers);
            c->ffn_kind[list[i]] = MOE_FFN_MOE;
        }
    } else {
        int step;
        MOE_TRY(moe_json_int32(path, root, "interleave_moe_layer_step", 0, 1, 1, 1 << 20, &step));
        for (int i = 0; i < c->n_layers; i++) c->ffn_kind[i] = (i + 1) % step == 0 ? MOE_FFN_MOE : MOE_FFN_DENSE;
    }
    /* no_rope_layers[i] == 1: layer i uses RoPE; absent, null or empty: a NoPE layer every interval layers
     * (transformers takes a falsy list as absent) */
    MOE_TRY(int_list(path, root, "no_rope_layers", 0, 1, list, MOE_MAX_LAYERS + 1, &n));
    if (n > 0) {
        if (n < c->n_layers)
            return moe_fail(MOE_EINPUT, "%s: field \"no_rope_layers\" has %d entries for %d layers", path, n, c->n_layers);
        for (int i = 0; i < c->n_layers; i++) c->nope[i] = !list[i];
    } else {
        int every;
        MOE_TRY(moe_json_int32(path, root, "no_rope_layer_interval", 0, 4, 1, 1 << 20, &every));
        for (int i = 0; i < c->n_layers; i++) c->nope[i] = (i + 1) % every == 0;
    }
    int chunk = 8192;
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(root, "attention_chunk_size");
    if (cs && cJSON_IsNull(cs)) chunk = 0;
    else MOE_TRY(moe_json_int32(path, root, "attention_chunk_size", 0, 8192, 1, 1 << 30, &chunk));
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layers)
            return moe_fail(MOE_EINPUT, "%s: field \"layer_types\" must list one type per layer", path);
        int i = 0;
        for (const cJSON *e = lt->child; e; e = e->next, i++) {
            int chunked = cJSON_IsString(e) && !strcmp(e->valuestring, "chunked_attention");
            if (!chunked && !(cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")))
                return moe_fail(MOE_EINPUT, "%s: layer_types[%d] must be \"chunked_attention\" or \"full_attention\"", path, i);
            if (chunked && !chunk)
                return moe_fail(MOE_EINPUT, "%s: layer_types[%d] is chunked but attention_chunk_size is null", path, i);
            c->attn_chunk[i] = chunked ? chunk : 0;
        }
    } else {
        for (int i = 0; i < c->n_layers; i++) c->attn_chunk[i] = c->nope[i] ? 0 : chunk;
    }
    int qk_norm;
    MOE_TRY(moe_json_bool(path, root, "use_qk_norm", 0, 1, &qk_norm));
    c->qk_norm = qk_norm ? MOE_QKNORM_HEAD_UNIT_POST : MOE_QKNORM_NONE;
    /* a number in some released configs (Scout: 4): Python truthiness */
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(root, "attn_temperature_tuning");
    if (cJSON_IsNumber(tt)) c->temp_tuning = tt->valuedouble != 0;
    else MOE_TRY(moe_json_bool(path, root, "attn_temperature_tuning", 0, 1, &c->temp_tuning));
    MOE_TRY(moe_json_num(path, root, "floor_scale", 0, 8192, 1e-30, 1e30, &c->temp_floor));
    MOE_TRY(moe_json_num(path, root, "attn_scale", 0, 0.1, -1e30, 1e30, &c->temp_scale));
    snprintf(c->router, sizeof c->router, "sigmoid_topk");
    c->expert_input_weighted = 1;
    c->n_shared_experts = 1;
    c->ffn_name = "feed_forward";
    c->moe_block = "feed_forward";
    c->router_names[0] = "router.weight";
    c->shared_name = "shared_expert";
    c->experts_in_out = 1;
    return MOE_OK;
}

/* The multimodal checkpoint: the text model's keys are in "text_config", its tensors under "language_model.". */
static moe_status parse_multimodal(const char *path, const cJSON *root, moe_config *c) {
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(tc)) return moe_fail(MOE_EINPUT, "%s: field \"text_config\" must be an object", path);
    char p[600];
    snprintf(p, sizeof p, "%s: text_config", path);
    MOE_TRY(parse_text(p, tc, c));
    c->prefix = "language_model.";
    c->unused_ok[0] = "vision_model.";
    c->unused_ok[1] = "multi_modal_projector.";
    return MOE_OK;
}

const moe_arch moe_arch_llama4_text = {"llama4_text", parse_text};
const moe_arch moe_arch_llama4 = {"llama4", parse_multimodal};
