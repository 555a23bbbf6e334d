/* gguf_model.c - a llama.cpp GGUF file as a moe model (model/gguf_model.h).
 *
 * The file's metadata becomes the config.json that the architecture files (arch_*.c) parse, so a
 * GGUF model goes through exactly the checks and defaults of its Hugging Face family; its tensors
 * are renamed to the Hugging Face names that the binder looks up, and stay in the mapped file in
 * their block format. Supported general.architecture values and what they become:
 *   llama      llama, or mixtral when it has experts (llama.cpp stores Mixtral as llama + experts)
 *   qwen2      qwen2            qwen2moe   qwen2_moe        qwen3moe   qwen3_moe
 *   qwen3      qwen3_moe without experts (Qwen3 dense: the same blocks)
 *   olmoe      olmoe            deepseek2  deepseek_v2, or deepseek_v3 with sigmoid gating
 * What llama.cpp's converter changes, undone here:
 *   - llama permutes the rows of q and k (and their biases) so that ggml's RoPE, which rotates
 *     adjacent pairs, gives transformers' rotate-half result. Rather than permuting back, the model
 *     rotates adjacent pairs too (MOE_ROPE_PAIRS_INTERLEAVED): q and k come out permuted the same
 *     way, and q . k is unchanged.
 *   - Llama 3's scaled rope is stored as per-frequency divisors (rope_freqs.weight), applied to the
 *     inverse frequencies after binding (moe_gguf_after_bind).
 *   - experts are stacked ([experts][rows][cols] per projection): the binder slices them.
 * GGUF files of DeepSeek-V2/V3 written by converters since mid-2025 split kv_b into attn_k_b and
 * attn_v_b for llama.cpp's absorbed attention; moe computes MLA from kv_b, so those are refused with
 * a message (files with attn_kv_b load). */
#include "model/gguf_model.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/arch.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gctx {
    const char *path;
    const moe_gguf_meta *m;
    const moe_st_file *f;
    char arch[32];
    cJSON *root;
    moe_status st;
} gctx;

static int has_tensor(const moe_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) return 1;
    return 0;
}
static const moe_tensor *tensor(const moe_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->names[i], name)) return &f->tensors[i];
    return NULL;
}

/* "{arch}.suffix" as an integer into root[hf]; required keys must be present */
static int64_t put_int(gctx *g, const char *hf, const char *suffix, int required, int64_t lo, int64_t hi) {
    char key[128];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.%s", g->arch, suffix);
    if (g->st) return 0;
    int r = moe_gguf_get_i64(g->m, key, lo, hi, &v, &g->st);
    if (r == 0 && required) g->st = moe_fail(MOE_EINPUT, "%s: missing key \"%s\"", g->path, key);
    if (r == 1 && hf) cJSON_AddNumberToObject(g->root, hf, (double)v);
    return r == 1 ? v : 0;
}
static int put_num(gctx *g, const char *hf, const char *suffix, double *out) {
    char key[128];
    double v;
    snprintf(key, sizeof key, "%s.%s", g->arch, suffix);
    if (g->st) return 0;
    int r = moe_gguf_get_f64(g->m, key, &v, &g->st);
    if (r == 1 && !isfinite(v)) { g->st = moe_fail(MOE_EINPUT, "%s: key \"%s\" is not finite", g->path, key); return 0; }
    if (r == 1 && hf) cJSON_AddNumberToObject(g->root, hf, v);
    if (r == 1 && out) *out = v;
    return r == 1;
}
static int get_bool(gctx *g, const char *suffix, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", g->arch, suffix);
    return g->st ? 0 : moe_gguf_get_bool(g->m, key, out, &g->st) == 1;
}

/* keys every family shares */
static void common(gctx *g) {
    put_int(g, "num_hidden_layers", "block_count", 1, 1, MOE_MAX_LAYERS);
    int64_t d = put_int(g, "hidden_size", "embedding_length", 1, 1, 1 << 20);
    put_int(g, "max_position_embeddings", "context_length", 0, 1, 1 << 30);
    int64_t heads = put_int(g, "num_attention_heads", "attention.head_count", 1, 1, 4096);
    put_int(g, "num_key_value_heads", "attention.head_count_kv", 0, 1, 4096);
    put_num(g, "rms_norm_eps", "attention.layer_norm_rms_epsilon", NULL);
    double theta;
    if (put_num(g, NULL, "rope.freq_base", &theta)) cJSON_AddNumberToObject(g->root, "rope_theta", theta);
    int64_t kl = put_int(g, NULL, "attention.key_length", 0, 1, 65536);
    int64_t vl = put_int(g, NULL, "attention.value_length", 0, 1, 65536);
    if (!g->st && strcmp(g->arch, "deepseek2")) {
        if (kl && vl && kl != vl) g->st = moe_fail(MOE_EINPUT, "%s: key_length %lld differs from value_length %lld", g->path, (long long)kl, (long long)vl);
        if (kl && heads && kl != d / heads) cJSON_AddNumberToObject(g->root, "head_dim", (double)kl);
        int64_t rd = put_int(g, NULL, "rope.dimension_count", 0, 1, 65536);
        int64_t hd = kl ? kl : heads ? d / heads : 0;
        if (!g->st && rd && rd != hd)
            g->st = moe_fail(MOE_EINPUT, "%s: %s.rope.dimension_count %lld: rotating part of a head (%lld) is not supported", g->path,
                             g->arch, (long long)rd, (long long)hd);
    }
    /* rope scaling */
    const char *s;
    size_t sl;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", g->arch);
    if (!g->st && moe_gguf_get_str(g->m, key, &s, &sl, &g->st) == 1 && !(sl == 4 && !memcmp(s, "none", 4))) {
        cJSON *rs = cJSON_AddObjectToObject(g->root, "rope_scaling");
        double factor = 1;
        char type[16];
        snprintf(type, sizeof type, "%.*s", (int)(sl < 15 ? sl : 15), s);
        for (char *p = type; *p; p++)
            if (*p < 'a' || *p > 'z') *p = '?';
        put_num(g, NULL, "rope.scaling.factor", &factor);
        cJSON_AddStringToObject(rs, "rope_type", type);
        cJSON_AddNumberToObject(rs, "factor", factor);
        if (!strcmp(type, "yarn")) {
            int64_t omp = put_int(g, NULL, "rope.scaling.original_context_length", 1, 1, 1 << 30);
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", (double)omp);
            double v;
            if (put_num(g, NULL, "rope.scaling.yarn_beta_fast", &v)) cJSON_AddNumberToObject(rs, "beta_fast", v);
            if (put_num(g, NULL, "rope.scaling.yarn_beta_slow", &v)) cJSON_AddNumberToObject(rs, "beta_slow", v);
            if (put_num(g, NULL, "rope.scaling.yarn_log_multiplier", &v)) { /* 0.1 * mscale_all_dim (DeepSeek) */
                cJSON_AddNumberToObject(rs, "mscale", v / 0.1);
                cJSON_AddNumberToObject(rs, "mscale_all_dim", v / 0.1);
            }
        } else if (strcmp(type, "linear")) {
            g->st = moe_fail(MOE_EINPUT, "%s: rope scaling \"%s\" is not supported (linear, yarn)", g->path, type);
        }
    }
    /* vocabulary, tied head, special tokens */
    const moe_tensor *emb = tensor(g->f, "token_embd.weight");
    if (!g->st && (!emb || emb->ndim != 2)) g->st = moe_fail(MOE_EINPUT, "%s: no 2-D tensor \"token_embd.weight\"", g->path);
    if (g->st) return;
    cJSON_AddNumberToObject(g->root, "vocab_size", (double)emb->shape[0]);
    cJSON_AddBoolToObject(g->root, "tie_word_embeddings", !has_tensor(g->f, "output.weight"));
    int64_t v;
    if (moe_gguf_get_i64(g->m, "tokenizer.ggml.bos_token_id", 0, 1 << 24, &v, &g->st) == 1)
        cJSON_AddNumberToObject(g->root, "bos_token_id", (double)v);
    cJSON *eos = cJSON_AddArrayToObject(g->root, "eos_token_id");
    int64_t e1 = -1;
    if (moe_gguf_get_i64(g->m, "tokenizer.ggml.eos_token_id", 0, 1 << 24, &e1, &g->st) == 1)
        cJSON_AddItemToArray(eos, cJSON_CreateNumber((double)e1));
    if (moe_gguf_get_i64(g->m, "tokenizer.ggml.eot_token_id", 0, 1 << 24, &v, &g->st) == 1 && v != e1)
        cJSON_AddItemToArray(eos, cJSON_CreateNumber((double)v));
}

static void experts_common(gctx *g, const char *count_key) {
    put_int(g, count_key, "expert_count", 1, 1, 65536);
    put_int(g, "num_experts_per_tok", "expert_used_count", 1, 1, 65536);
}

static void cfg_llama(gctx *g) {
    int64_t ne = put_int(g, NULL, "expert_count", 0, 0, 65536);
    cJSON_AddStringToObject(g->root, "model_type", ne > 0 ? "mixtral" : "llama");
    put_int(g, "intermediate_size", "feed_forward_length", 1, 1, 1 << 22);
    if (ne > 0) experts_common(g, "num_local_experts");
    if (has_tensor(g->f, "blk.0.attn_q.bias")) cJSON_AddBoolToObject(g->root, "attention_bias", 1);
}

static void cfg_qwen2(gctx *g) {
    cJSON_AddStringToObject(g->root, "model_type", "qwen2");
    put_int(g, "intermediate_size", "feed_forward_length", 1, 1, 1 << 22);
}

static void cfg_qwen_moe(gctx *g) {
    int q3 = !strcmp(g->arch, "qwen3moe");
    cJSON_AddStringToObject(g->root, "model_type", q3 ? "qwen3_moe" : "qwen2_moe");
    put_int(g, "intermediate_size", "feed_forward_length", 0, 1, 1 << 22);
    experts_common(g, "num_experts");
    put_int(g, "moe_intermediate_size", "expert_feed_forward_length", 1, 1, 1 << 22);
    if (!q3) cJSON_AddNumberToObject(g->root, "shared_expert_intermediate_size",
                                     (double)put_int(g, NULL, "expert_shared_feed_forward_length", 0, 0, 1 << 22));
    /* llama.cpp renormalises Qwen3-MoE's top-k weights and not Qwen2-MoE's, unless the file says */
    int norm = q3;
    get_bool(g, "expert_weights_norm", &norm);
    cJSON_AddBoolToObject(g->root, "norm_topk_prob", norm);
}

static void cfg_qwen3(gctx *g) {   /* dense Qwen3: Qwen3-MoE blocks without experts */
    cJSON_AddStringToObject(g->root, "model_type", "qwen3_moe");
    put_int(g, "intermediate_size", "feed_forward_length", 1, 1, 1 << 22);
    cJSON_AddNumberToObject(g->root, "num_experts", 0);
}

static void cfg_olmoe(gctx *g) {
    cJSON_AddStringToObject(g->root, "model_type", "olmoe");
    put_int(g, "intermediate_size", "expert_feed_forward_length", 0, 1, 1 << 22);
    put_int(g, "intermediate_size", "feed_forward_length", 0, 1, 1 << 22);
    experts_common(g, "num_experts");
    int norm = 0;
    get_bool(g, "expert_weights_norm", &norm);
    cJSON_AddBoolToObject(g->root, "norm_topk_prob", norm);
    put_num(g, "clip_qkv", "attention.clamp_kqv", NULL);
}

static void cfg_deepseek2(gctx *g) {
    int64_t gating = put_int(g, NULL, "expert_gating_func", 0, 0, 3);   /* 1 softmax, 2 sigmoid */
    int v3 = gating == 2;
    cJSON_AddStringToObject(g->root, "model_type", v3 ? "deepseek_v3" : "deepseek_v2");
    /* llama.cpp stores MLA as one key/value head (its absorbed form); moe expands every head */
    cJSON_DeleteItemFromObjectCaseSensitive(g->root, "num_key_value_heads");
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(g->root, "num_attention_heads");
    if (heads) cJSON_AddNumberToObject(g->root, "num_key_value_heads", cJSON_GetNumberValue(heads));
    put_int(g, "intermediate_size", "feed_forward_length", 1, 1, 1 << 22);
    put_int(g, "moe_intermediate_size", "expert_feed_forward_length", 1, 1, 1 << 22);
    experts_common(g, "n_routed_experts");
    put_int(g, "n_shared_experts", "expert_shared_count", 0, 0, 65536);
    put_int(g, "first_k_dense_replace", "leading_dense_block_count", 0, 0, MOE_MAX_LAYERS);
    put_num(g, "routed_scaling_factor", "expert_weights_scale", NULL);
    int norm = 0;
    get_bool(g, "expert_weights_norm", &norm);
    cJSON_AddBoolToObject(g->root, "norm_topk_prob", norm);
    int64_t ng = put_int(g, "n_group", "expert_group_count", 0, 1, 65536);
    int64_t tg = put_int(g, "topk_group", "expert_group_used_count", 0, 1, 65536);
    cJSON_AddStringToObject(g->root, "topk_method", v3 ? "noaux_tc" : ng > 1 && tg < ng ? "group_limited_greedy" : "greedy");
    if (v3) cJSON_AddStringToObject(g->root, "scoring_func", "sigmoid");
    int64_t ql = put_int(g, NULL, "attention.q_lora_rank", 0, 1, 1 << 20);
    if (ql) cJSON_AddNumberToObject(g->root, "q_lora_rank", (double)ql);
    else cJSON_AddNullToObject(g->root, "q_lora_rank");
    int64_t kvl = put_int(g, "kv_lora_rank", "attention.kv_lora_rank", 1, 1, 1 << 20);
    int64_t rope = put_int(g, "qk_rope_head_dim", "rope.dimension_count", 1, 1, 65536);
    /* newer files: key_length_mla / value_length_mla; older: key_length / value_length are the head's */
    int64_t kmla = put_int(g, NULL, "attention.key_length_mla", 0, 1, 65536), vmla = put_int(g, NULL, "attention.value_length_mla", 0, 1, 65536);
    if (!kmla) { kmla = put_int(g, NULL, "attention.key_length", 1, 1, 65536); vmla = put_int(g, NULL, "attention.value_length", 1, 1, 65536); }
    (void)kvl;
    if (!g->st && kmla <= rope) g->st = moe_fail(MOE_EINPUT, "%s: key length %lld is not above the rope dimensions %lld", g->path, (long long)kmla, (long long)rope);
    cJSON_AddNumberToObject(g->root, "qk_nope_head_dim", (double)(kmla - rope));
    cJSON_AddNumberToObject(g->root, "v_head_dim", (double)vmla);
    cJSON_AddNumberToObject(g->root, "moe_layer_freq", 1);
    if (!g->st && !has_tensor(g->f, "blk.0.attn_kv_b.weight") && has_tensor(g->f, "blk.0.attn_k_b.weight"))
        g->st = moe_fail(MOE_EINPUT, "%s: this DeepSeek GGUF splits kv_b into attn_k_b/attn_v_b (llama.cpp's absorbed MLA); moe "
                         "needs attn_kv_b (convert with an older llama.cpp, or load the safetensors checkpoint)", g->path);
}

static const struct { const char *arch; void (*fill)(gctx *); int permuted_qk; } k_archs[] = {
    {"llama", cfg_llama, 1},   {"qwen2", cfg_qwen2, 0},       {"qwen2moe", cfg_qwen_moe, 0}, {"qwen3moe", cfg_qwen_moe, 0},
    {"qwen3", cfg_qwen3, 0},   {"olmoe", cfg_olmoe, 0},       {"deepseek2", cfg_deepseek2, 0},
};

/* ---- tensor names ---------------------------------------------------------------------------- */

static const struct { const char *gguf, *hf; } k_block_names[] = {
    {"attn_norm.weight", "input_layernorm.weight"},   {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},     {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.weight", "self_attn.k_proj.weight"},     {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.weight", "self_attn.v_proj.weight"},     {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"}, {"attn_output.bias", "self_attn.o_proj.bias"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"}, {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"attn_q_a.weight", "self_attn.q_a_proj.weight"}, {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
    {"attn_q_b.weight", "self_attn.q_b_proj.weight"}, {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
    {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"}, {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},      {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},      {"ffn_gate_inp.weight", "mlp.gate.weight"},
    {"ffn_gate_exps.weight", "mlp.experts.gate_proj"}, {"ffn_up_exps.weight", "mlp.experts.up_proj"},
    {"ffn_down_exps.weight", "mlp.experts.down_proj"}, {"ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight"},
    {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
    {"ffn_gate_shexp.weight", "mlp.%S.gate_proj.weight"}, {"ffn_up_shexp.weight", "mlp.%S.up_proj.weight"},
    {"ffn_down_shexp.weight", "mlp.%S.down_proj.weight"},
};

static moe_status rename_to(moe_st_file *f, int i, const char *hf) {
    char *n = moe_strdup(hf);
    if (!n) return moe_fail(MOE_ENOMEM, "out of memory");
    free(f->names[i]);
    f->names[i] = n;
    f->tensors[i].name = n;
    return MOE_OK;
}

static moe_status rename_tensors(const char *path, moe_st_file *f, const moe_config *c) {
    for (int i = 0; i < f->n; i++) {
        const char *g = f->names[i];
        char hf[256];
        int l, e, len = 0;
        hf[0] = 0;
        if (!strcmp(g, "token_embd.weight")) snprintf(hf, sizeof hf, "model.embed_tokens.weight");
        else if (!strcmp(g, "output_norm.weight")) snprintf(hf, sizeof hf, "model.norm.weight");
        else if (!strcmp(g, "output.weight")) snprintf(hf, sizeof hf, "lm_head.weight");
        else if (sscanf(g, "blk.%d.%n", &l, &len) == 1 && len > 0 && l >= 0) {
            const char *rest = g + len;
            char kind[16];
            int n2 = 0;
            for (size_t k = 0; k < sizeof k_block_names / sizeof *k_block_names && !hf[0]; k++) {
                if (strcmp(rest, k_block_names[k].gguf)) continue;
                const char *h = k_block_names[k].hf, *pct = strstr(h, "%S");
                if (pct) snprintf(hf, sizeof hf, "model.layers.%d.%.*s%s%s", l, (int)(pct - h), h, c->shared_name ? c->shared_name : "shared_expert", pct + 2);
                else snprintf(hf, sizeof hf, "model.layers.%d.%s", l, h);
            }
            /* experts stored one by one (early Mixtral conversions): blk.L.ffn_gate.E.weight */
            if (!hf[0] && sscanf(rest, "ffn_%15[a-z].%d.weight%n", kind, &e, &n2) == 2 && n2 == (int)strlen(rest) && e >= 0) {
                const char *p = !strcmp(kind, "gate") ? c->expert_gate : !strcmp(kind, "up") ? c->expert_up
                                : !strcmp(kind, "down") ? c->expert_down : NULL;
                if (p) snprintf(hf, sizeof hf, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, p);
            }
        }
        if (hf[0]) MOE_TRY(rename_to(f, i, hf));
        /* Qwen2-MoE's shared-expert gate is one row: ggml may store it as a vector */
        moe_tensor *t = &f->tensors[i];
        if (hf[0] && strstr(hf, "shared_expert_gate.weight") && t->ndim == 1) {
            t->ndim = 2;
            t->shape[1] = t->shape[0];
            t->shape[0] = 1;
        }
    }
    (void)path;
    return MOE_OK;
}

moe_status moe_gguf_model_config(const char *path, moe_st_file *f, const moe_gguf_meta *meta, moe_config *cfg) {
    gctx g = {path, meta, f, "", cJSON_CreateObject(), MOE_OK};
    const char *a;
    size_t al;
    int fi = -1;
    int64_t parts = 1;
    if (g.root && moe_gguf_get_i64(meta, "split.count", 0, 1 << 20, &parts, &g.st) == 1 && parts > 1)
        g.st = moe_fail(MOE_EINPUT, "%s: part of a GGUF split into %lld files, which moe does not read; merge them first "
                        "(llama-gguf-split --merge)", path, (long long)parts);
    if (!g.root || g.st) {
        if (!g.st) g.st = moe_fail(MOE_ENOMEM, "out of memory");
    } else if (moe_gguf_get_str(meta, "general.architecture", &a, &al, &g.st) != 1) {
        if (!g.st) g.st = moe_fail(MOE_EINPUT, "%s: missing key \"general.architecture\"", path);
    } else {
        snprintf(g.arch, sizeof g.arch, "%.*s", (int)(al < 31 ? al : 31), a);
        for (char *p = g.arch; *p; p++) /* shown in messages: keep them printable */
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.')) *p = '?';
        for (size_t i = 0; i < sizeof k_archs / sizeof *k_archs; i++)
            if (!strcmp(k_archs[i].arch, g.arch) && al == strlen(g.arch)) fi = (int)i;
        if (fi < 0) {
            char list[200] = "";
            for (size_t i = 0; i < sizeof k_archs / sizeof *k_archs; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", k_archs[i].arch);
            g.st = moe_fail(MOE_EINPUT, "%s: GGUF architecture \"%s\" is not supported (%s)", path, g.arch, list);
        } else {
            cJSON_AddStringToObject(g.root, "hidden_act", "silu");
            common(&g);
            if (!g.st) k_archs[fi].fill(&g);
        }
    }
    moe_status st = g.st;
    if (st == MOE_OK) st = moe_config_parse(path, g.root, cfg);
    cJSON_Delete(g.root);
    if (st == MOE_OK) {
        if (k_archs[fi].permuted_qk) cfg->rope.layout = MOE_ROPE_PAIRS_INTERLEAVED;
        if (!strcmp(g.arch, "qwen3")) snprintf(cfg->model_type, sizeof cfg->model_type, "qwen3");
        st = rename_tensors(path, f, cfg);
    }
    return st;
}

moe_status moe_gguf_model_open(const char *path, int in_memory, moe_config *cfg, moe_weights **out) {
    *out = NULL;
    moe_st_file *f = NULL;
    moe_gguf_meta meta;
    MOE_TRY(moe_gguf_open(path, in_memory, &f, &meta));
    moe_status st = moe_gguf_model_config(path, f, &meta, cfg);
    moe_gguf_meta_free(&meta);
    if (st == MOE_OK) st = moe_weights_from_file(path, f, "gguf", out);
    else moe_st_close(f);
    return st;
}

moe_status moe_gguf_after_bind(moe_model *m) {
    moe_weights *w = m->weights;
    if (!moe_weights_has(w, "rope_freqs.weight")) return MOE_OK;
    float *ff;
    int half = m->rope.dim / 2;
    MOE_TRY(moe_weights_get_f32(w, "rope_freqs.weight", 1, (int64_t[]){half}, &ff));
    moe_status st = MOE_OK;
    for (int i = 0; i < half && st == MOE_OK; i++) {
        if (!(ff[i] > 0) || !isfinite(ff[i])) st = moe_fail(MOE_EINPUT, "%s: rope_freqs.weight[%d] = %g is not a positive divisor", w->source, i, ff[i]);
        else m->rope.inv_freq[i] /= ff[i];
    }
    moe_free(ff);
    return st;
}
