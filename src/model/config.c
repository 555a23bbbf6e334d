/* config.c - config.json: model_type dispatch, the keys all families share, rope scaling, and the
 * final consistency checks that keep later code free of impossible shapes. */
#include "model/config.h"
#include "core/error.h"
#include "io/json.h"
#include "model/arch.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define DIM_MAX (1 << 20)

moe_status moe_config_require_bool(const char *path, const cJSON *root, const char *key, int ok) {
    int v;
    MOE_TRY(moe_json_bool(path, root, key, MOE_JSON_OPTIONAL, ok, &v));
    if (v != ok) return moe_fail(MOE_EINPUT, "%s: field \"%s\" = %s is not supported", path, key, v ? "true" : "false");
    return MOE_OK;
}

moe_status moe_config_require_str(const char *path, const cJSON *root, const char *key, const char *ok) {
    const char *v;
    MOE_TRY(moe_json_str(path, root, key, MOE_JSON_OPTIONAL, ok, &v));
    if (strcmp(v, ok) != 0)
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" = \"%.40s\" is not supported (only \"%s\")", path, key, v, ok);
    return MOE_OK;
}

/* "eos_token_id": an integer or a list of integers (null or absent: none). */
static moe_status parse_special_ids(const char *path, const cJSON *root, moe_config *c) {
    MOE_TRY(moe_json_int32(path, root, "bos_token_id", 0, -1, 0, 1 << 24, &c->bos_token_id));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    c->n_eos = 0;
    if (!e || cJSON_IsNull(e)) return MOE_OK;
    if (cJSON_IsNumber(e)) return moe_json_int32(path, root, "eos_token_id", 0, -1, 0, 1 << 24, &c->eos_token_id[c->n_eos++]);
    if (!cJSON_IsArray(e)) return moe_fail(MOE_EINPUT, "%s: field \"eos_token_id\" must be an integer or a list", path);
    for (const cJSON *x = e->child; x; x = x->next) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > (1 << 24) || x->valuedouble != floor(x->valuedouble))
            return moe_fail(MOE_EINPUT, "%s: field \"eos_token_id\" must hold token ids", path);
        if (c->n_eos < 8) c->eos_token_id[c->n_eos++] = (int)x->valuedouble;
    }
    return MOE_OK;
}

moe_status moe_config_common(const char *path, const cJSON *root, const moe_common_defaults *d, moe_config *c) {
    static const moe_common_extras none = {0, 0, 0};
    return moe_config_common_ex(path, root, d, &none, c);
}

moe_status moe_config_common_ex(const char *path, const cJSON *root, const moe_common_defaults *d,
                                  const moe_common_extras *x, moe_config *c) {
    MOE_TRY(parse_special_ids(path, root, c));
    MOE_TRY(moe_json_int32(path, root, "vocab_size", 0, d->vocab, 1, 1 << 24, &c->vocab));
    MOE_TRY(moe_json_int32(path, root, "hidden_size", 0, d->hidden, 1, DIM_MAX, &c->hidden));
    MOE_TRY(moe_json_int32(path, root, "intermediate_size", 0, d->intermediate, 1, DIM_MAX, &c->intermediate));
    MOE_TRY(moe_json_int32(path, root, "num_hidden_layers", 0, d->n_layers, 1, MOE_MAX_LAYERS, &c->n_layers));
    MOE_TRY(moe_json_int32(path, root, "num_attention_heads", 0, d->n_heads, 1, 4096, &c->n_heads));
    int kv_default = d->n_kv_heads > 0 ? d->n_kv_heads : c->n_heads;
    MOE_TRY(moe_json_int32(path, root, "num_key_value_heads", 0, kv_default, 1, 4096, &c->n_kv_heads));
    MOE_TRY(moe_json_int32(path, root, "max_position_embeddings", 0, d->max_pos, 1, 1 << 30, &c->max_pos));
    MOE_TRY(moe_json_num(path, root, "rms_norm_eps", 0, d->rms_eps, 0, 1, &c->rms_eps));
    MOE_TRY(moe_json_bool(path, root, "tie_word_embeddings", 0, 0, &c->tie_embeddings));
    if (c->hidden % c->n_heads && !moe_json_has(root, "head_dim") && !x->head_dim)
        return moe_fail(MOE_EINPUT, "%s: hidden_size %d is not divisible by num_attention_heads %d", path, c->hidden,
                        c->n_heads);
    MOE_TRY(moe_json_int32(path, root, "head_dim", 0, x->head_dim ? x->head_dim : c->hidden / c->n_heads, 1, 65536,
                           &c->head_dim));
    if (c->n_heads % c->n_kv_heads)
        return moe_fail(MOE_EINPUT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
                        c->n_heads, c->n_kv_heads);
    MOE_TRY(moe_config_require_str(path, root, "hidden_act", "silu"));
    c->rope.theta = d->rope_theta;
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
    c->rope.dim = c->head_dim;
    c->rope.layout = MOE_ROPE_PAIRS_HALF;
    c->routed_scaling = 1.0;
    MOE_TRY(moe_config_rope(path, root, c));
    /* the rope features a family's transformers code implements */
    if (c->rope.partial >= 0 && c->rope.partial != 1.0 && !x->partial_rotary)
        return moe_fail(MOE_EINPUT, "%s: field \"partial_rotary_factor\" = %g is not supported", path, c->rope.partial);
    double prf = c->rope.partial >= 0 ? c->rope.partial : x->partial_rotary > 0 ? x->partial_rotary : 1.0;
    c->rope.dim = (int)(c->head_dim * prf);
    if (!strcmp(c->rope.type, "longrope")) {
        if (!x->longrope)
            return moe_fail(MOE_EINPUT, "%s: rope type \"longrope\" is not supported for %s", path, c->model_type);
        if (c->rope.n_short_factor != c->rope.dim / 2)
            return moe_fail(MOE_EINPUT, "%s: short_factor has %d entries, the rotary dimension %d needs %d", path,
                            c->rope.n_short_factor, c->rope.dim, c->rope.dim / 2);
    }
    return MOE_OK;
}

/* longrope's list of frequency divisors (positive numbers). */
static moe_status rope_factors(const char *p, const cJSON *rs, const char *key, float *out, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rs, key);
    if (!cJSON_IsArray(a)) return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be a list of numbers", p, key);
    *n = 0;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || !isfinite(e->valuedouble))
            return moe_fail(MOE_EINPUT, "%s: field \"%s\" must hold positive numbers", p, key);
        if (*n == MOE_ROPE_MAX_FACTORS)
            return moe_fail(MOE_EINPUT, "%s: field \"%s\" has more than %d entries", p, key, MOE_ROPE_MAX_FACTORS);
        if (out) out[*n] = (float)e->valuedouble;
        (*n)++;
    }
    return MOE_OK;
}

double moe_yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

moe_status moe_config_int_alias(const char *path, const cJSON *root, const char *key, const char *alias, int required,
                                int def, int min, int max, int *out) {
    int has_key = moe_json_has(root, key), has_alias = moe_json_has(root, alias), a;
    if (!has_key && has_alias) return moe_json_int32(path, root, alias, 0, def, min, max, out);
    if (required && !has_key)
        return moe_fail(MOE_EINPUT, "%s: missing required field \"%s\" (or \"%s\")", path, key, alias);
    MOE_TRY(moe_json_int32(path, root, key, 0, def, min, max, out));
    if (has_alias) {
        MOE_TRY(moe_json_int32(path, root, alias, 0, def, min, max, &a));
        if (a != *out)
            return moe_fail(MOE_EINPUT, "%s: fields \"%s\" = %d and \"%s\" = %d disagree", path, key, *out, alias, a);
    }
    return MOE_OK;
}

/* The rope dictionary: transformers 4.x reads "rope_scaling" (theta outside it, in "rope_theta") and
 * ignores "rope_parameters"; 5.x writes "rope_parameters" (theta inside) but still takes "rope_scaling"
 * first when a file has both, so both versions agree on: rope_scaling if set, else rope_parameters.
 * 5.x may nest the dictionary per layer type ({"full_attention": {...}, "sliding_attention": {...}});
 * moe has one rope for all layers, so nested entries must be equal. */
static moe_status rope_dict(const char *path, const cJSON *root, const cJSON **out, const char **name) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    *name = "rope_scaling";
    if (!rs || cJSON_IsNull(rs)) { rs = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters"); *name = "rope_parameters"; }
    *out = NULL;
    if (!rs || cJSON_IsNull(rs)) return MOE_OK;
    if (!cJSON_IsObject(rs)) return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be an object or null", path, *name);
    const cJSON *first = NULL;
    int nested = 0, plain = 0;
    for (const cJSON *e = rs->child; e; e = e->next) {
        if (cJSON_IsObject(e)) {
            nested = 1;
            if (!first) first = e;
            else if (!cJSON_Compare(first, e, 1))
                return moe_fail(MOE_EINPUT, "%s: %s: different rope parameters per layer type (\"%.40s\", \"%.40s\") are not supported",
                                path, *name, first->string, e->string);
        } else if (!cJSON_IsNull(e)) {
            plain = 1;
        }
    }
    if (nested && plain)
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" mixes per-layer-type dictionaries with plain values", path, *name);
    *out = nested ? first : rs;
    return MOE_OK;
}

moe_status moe_config_rope(const char *path, const cJSON *root, moe_config *c) {
    /* 4.x configs keep partial_rotary_factor at the top level, 5.x inside the rope dictionary */
    MOE_TRY(moe_json_num(path, root, "partial_rotary_factor", 0, -1, 1e-6, 1, &c->rope.partial));
    const cJSON *rs;
    const char *rs_name;
    MOE_TRY(rope_dict(path, root, &rs, &rs_name));
    MOE_TRY(moe_json_num(path, root, "rope_theta", 0, c->rope.theta, 1e-6, 1e300, &c->rope.theta));
    strcpy(c->rope.type, "default");
    c->rope.factor = 1;
    c->rope.attention_factor = 1;
    c->rope.original_max_pos = c->max_pos;
    if (!rs) return MOE_OK;
    char p[600];
    snprintf(p, sizeof p, "%s: %s", path, rs_name);
    MOE_TRY(moe_json_num(p, rs, "rope_theta", 0, c->rope.theta, 1e-6, 1e300, &c->rope.theta));
    double prf;
    MOE_TRY(moe_json_num(p, rs, "partial_rotary_factor", 0, -1, 1e-6, 1, &prf));
    if (prf >= 0 && c->rope.partial >= 0 && prf != c->rope.partial)
        return moe_fail(MOE_EINPUT, "%s: partial_rotary_factor %g differs from the top-level %g", p, prf, c->rope.partial);
    if (prf >= 0) c->rope.partial = prf;
    const char *type;
    MOE_TRY(moe_json_str(p, rs, "type", 0, "default", &type));
    MOE_TRY(moe_json_str(p, rs, "rope_type", 0, type, &type));
    if (strcmp(type, "default") && strcmp(type, "linear") && strcmp(type, "llama3") && strcmp(type, "yarn") &&
        strcmp(type, "longrope"))
        return moe_fail(MOE_EINPUT, "%s: rope type \"%.30s\" is not supported (default, linear, llama3, yarn, longrope)", p,
                        type);
    snprintf(c->rope.type, sizeof c->rope.type, "%s", type);
    if (!strcmp(type, "default")) return MOE_OK;
    if (!strcmp(type, "longrope")) {
        int n_long;
        MOE_TRY(rope_factors(p, rs, "short_factor", c->rope.short_factor, &c->rope.n_short_factor));
        MOE_TRY(rope_factors(p, rs, "long_factor", NULL, &n_long));
        MOE_TRY(moe_json_num(p, rs, "short_mscale", 1, 1, 0, 1e6, &c->rope.short_mscale));
        MOE_TRY(moe_json_num(p, rs, "long_mscale", 1, 1, 0, 1e6, &c->rope.long_mscale));
        MOE_TRY(moe_json_int32(p, rs, "original_max_position_embeddings", 1, 0, 1, 1 << 30, &c->rope.original_max_pos));
        return MOE_OK;
    }
    MOE_TRY(moe_json_num(p, rs, "factor", 1, 1, 1e-6, 1e6, &c->rope.factor));
    /* MLA (DeepSeek) scales its softmax by mscale(factor, mscale_all_dim)^2 with any scaled rope */
    MOE_TRY(moe_json_num(p, rs, "mscale_all_dim", 0, 0, -1e6, 1e6, &c->rope.mscale_all_dim));
    if (!strcmp(type, "llama3")) {
        MOE_TRY(moe_json_num(p, rs, "low_freq_factor", 1, 1, 1e-6, 1e6, &c->rope.low_freq_factor));
        MOE_TRY(moe_json_num(p, rs, "high_freq_factor", 1, 4, 1e-6, 1e6, &c->rope.high_freq_factor));
        /* equal factors (Llama 4 Scout: 1 and 1) leave no band to smooth between the two wavelengths (rope.c) */
        /* absent: max_position_embeddings, as transformers 5 fills it in (4.x requires the key) */
        MOE_TRY(moe_json_int32(p, rs, "original_max_position_embeddings", 0, c->max_pos, 1, 1 << 30, &c->rope.original_max_pos));
    } else if (!strcmp(type, "yarn")) {
        double af;
        MOE_TRY(moe_json_num(p, rs, "attention_factor", 0, -1, 0, 1e6, &af));
        MOE_TRY(moe_json_num(p, rs, "mscale", 0, 0, -1e6, 1e6, &c->rope.mscale));
        MOE_TRY(moe_json_num(p, rs, "beta_fast", 0, 32, -1e6, 1e6, &c->rope.beta_fast));
        MOE_TRY(moe_json_num(p, rs, "beta_slow", 0, 1, -1e6, 1e6, &c->rope.beta_slow));
        if (c->rope.beta_fast == 0) c->rope.beta_fast = 32; /* Python's `x or 32` */
        if (c->rope.beta_slow == 0) c->rope.beta_slow = 1;
        MOE_TRY(moe_json_bool(p, rs, "truncate", 0, 1, &c->rope.truncate));
        int omp;
        MOE_TRY(moe_json_int32(p, rs, "original_max_position_embeddings", 0, 0, 0, 1 << 30, &omp));
        c->rope.original_max_pos = omp ? omp : c->max_pos;
        if (af >= 0) c->rope.attention_factor = af;
        else {
            double f = c->rope.factor;
            if (c->rope.mscale != 0 && c->rope.mscale_all_dim != 0)
                c->rope.attention_factor = moe_yarn_mscale(f, c->rope.mscale) / moe_yarn_mscale(f, c->rope.mscale_all_dim);
            else
                c->rope.attention_factor = moe_yarn_mscale(f, 1.0);
        }
    }
    return MOE_OK;
}

moe_status moe_config_sliding_all(const char *path, const cJSON *root, moe_config *c) {
    int w;
    MOE_TRY(moe_json_int32(path, root, "sliding_window", 0, 0, 1, 1 << 30, &w));
    for (int i = 0; i < c->n_layers; i++) c->sliding_window[i] = w;
    return MOE_OK;
}

moe_status moe_config_qwen_sparse_layers(const char *path, const cJSON *root, moe_config *c) {
    int step;
    MOE_TRY(moe_json_int32(path, root, "decoder_sparse_step", 0, 1, 1, MOE_MAX_LAYERS, &step));
    for (int i = 0; i < c->n_layers; i++)
        c->ffn_kind[i] = c->n_experts > 0 && (i + 1) % step == 0 ? MOE_FFN_MOE : MOE_FFN_DENSE;
    const cJSON *only = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    if (only && !cJSON_IsNull(only)) {
        if (!cJSON_IsArray(only)) return moe_fail(MOE_EINPUT, "%s: field \"mlp_only_layers\" must be an array", path);
        for (const cJSON *e = only->child; e; e = e->next) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0)
                return moe_fail(MOE_EINPUT, "%s: field \"mlp_only_layers\" must hold layer indices", path);
            if (e->valuedouble < c->n_layers) c->ffn_kind[(int)e->valuedouble] = MOE_FFN_DENSE;
        }
    }
    return MOE_OK;
}

/* Checks that hold for every family, so that the forward pass can trust the shapes. */
static moe_status validate(const char *path, moe_config *c) {
    int any_moe = 0;
    for (int i = 0; i < c->n_layers; i++) any_moe |= c->ffn_kind[i] == MOE_FFN_MOE;
    if (any_moe) {
        if (c->n_experts < 1 || c->n_experts > 65536)
            return moe_fail(MOE_EINPUT, "%s: number of experts %d is outside [1, 65536]", path, c->n_experts);
        if (c->top_k < 1 || c->top_k > c->n_experts)
            return moe_fail(MOE_EINPUT, "%s: field \"num_experts_per_tok\" = %d must be in [1, %d]", path, c->top_k,
                            c->n_experts);
        if (c->moe_intermediate < 1) return moe_fail(MOE_EINPUT, "%s: expert intermediate size must be positive", path);
        if (c->n_group > 1024) return moe_fail(MOE_EINPUT, "%s: n_group %d is more than 1024", path, c->n_group);
        if (c->n_group > 0) {
            if (c->n_experts % c->n_group)
                return moe_fail(MOE_EINPUT, "%s: n_routed_experts %d is not divisible by n_group %d", path, c->n_experts,
                                c->n_group);
            if (c->topk_group < 1 || c->topk_group > c->n_group)
                return moe_fail(MOE_EINPUT, "%s: field \"topk_group\" = %d must be in [1, n_group=%d]", path, c->topk_group,
                                c->n_group);
            if (c->has_score_bias && c->n_experts / c->n_group < 2)
                return moe_fail(MOE_EINPUT, "%s: each expert group needs at least 2 experts (n_routed_experts / n_group)", path);
        }
    }
    if (c->rope.dim % 2 || c->rope.dim < 2)
        return moe_fail(MOE_EINPUT, "%s: rotary dimension %d must be even and positive", path, c->rope.dim);
    if (!c->mla && c->rope.dim > c->head_dim)
        return moe_fail(MOE_EINPUT, "%s: rotary dimension %d exceeds head_dim %d", path, c->rope.dim, c->head_dim);
    /* keep every activation buffer well inside int range */
    double width = (double)c->n_heads * (c->mla ? c->qk_nope_dim + c->qk_rope_dim + c->v_head_dim : c->head_dim);
    if (width > DIM_MAX) return moe_fail(MOE_EINPUT, "%s: attention width %.0f is too large", path, width);
    return MOE_OK;
}

moe_status moe_config_parse(const char *path, const cJSON *root, moe_config *c) {
    memset(c, 0, sizeof *c);
    c->embed_scale = c->residual_scale = c->logits_scale = 1.0;
    snprintf(c->config_path, sizeof c->config_path, "%s", path);
    if (!cJSON_IsObject(root)) return moe_fail(MOE_EINPUT, "%s: not a JSON object", path);
    const char *mt;
    MOE_TRY(moe_json_str(path, root, "model_type", MOE_JSON_REQUIRED, NULL, &mt));
    /* "moe_<family>": a checkpoint of `moe train` that only moe computes right (a router or shared
     * experts the family lacks, in the moe-specific keys), named so that transformers refuses it */
    const moe_arch *a = moe_arch_find(strncmp(mt, "moe_", 4) == 0 ? mt + 4 : mt);
    if (!a)
        return moe_fail(MOE_EINPUT, "%s: model_type \"%.40s\" is not supported (supported: %s, and moe_ before any of them)",
                        path, mt, moe_arch_names());
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    MOE_TRY(a->parse(path, root, c));
    MOE_TRY(moe_config_moe_keys(path, root, c));
    return validate(path, c);
}

moe_status moe_config_load(const char *dir, moe_config *c) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root;
    MOE_TRY(moe_json_parse_file(path, 16u << 20, &root));
    moe_status st = moe_config_parse(path, root, c);
    cJSON_Delete(root);
    return st;
}
