/* testgen.h - tiny random qwen3_moe model folders for tests that need a model of a chosen size
 * (config.json + model.safetensors written with the library's own writer). Weights are normal with
 * std 1/sqrt(fan_in), norms near 1, the router twice as sharp so that routing is decisive.
 * Header-only on purpose: each test is one executable. */
#ifndef MOE_TESTS_TESTGEN_H
#define MOE_TESTS_TESTGEN_H
#include "core/dtype.h"
#include "io/st_writer.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct tg_model {
    int hidden, layers, heads, kv_heads, head_dim, vocab, experts, top_k, moe_ff;
    int bf16;         /* store matrices as BF16 instead of F32 */
    unsigned seed;
} tg_model;

static uint64_t tg_state;
static double tg_uniform(void) {
    tg_state ^= tg_state << 13; tg_state ^= tg_state >> 7; tg_state ^= tg_state << 17;
    return ((tg_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float tg_normal(void) { return (float)(sqrt(-2.0 * log(tg_uniform())) * cos(6.283185307179586 * tg_uniform())); }

typedef struct tg_ctx {
    const tg_model *m;
    moe_st_entry *e;
    int n, cap;
    float *buf;       /* one tensor */
    uint16_t *buf16;
} tg_ctx;

static void tg_add(tg_ctx *c, const char *name, int rows, int cols) {
    if (c->n == c->cap) { c->cap = c->cap ? 2 * c->cap : 64; c->e = realloc(c->e, sizeof *c->e * (size_t)c->cap); }
    moe_st_entry *e = &c->e[c->n++];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    int mat = cols > 0 && c->m->bf16;
    e->dtype = mat ? "BF16" : "F32";
    e->ndim = cols > 0 ? 2 : 1;
    e->shape[0] = rows;
    e->shape[1] = cols;
    e->nbytes = (uint64_t)rows * (cols > 0 ? cols : 1) * (mat ? 2 : 4);
}

static moe_status tg_data(void *user, int i, const void **out) {
    tg_ctx *c = user;
    const moe_st_entry *e = &c->e[i];
    size_t n = (size_t)e->shape[0] * (e->ndim == 2 ? (size_t)e->shape[1] : 1);
    int is_norm = strstr(e->name, "norm") != NULL, is_router = strstr(e->name, "mlp.gate.") != NULL;
    double std = e->ndim == 2 ? 1.0 / sqrt((double)e->shape[1]) : 0.2;
    if (is_router) std *= 2.0;
    for (size_t k = 0; k < n; k++) c->buf[k] = (float)((is_norm ? 1.0 : 0.0) + std * tg_normal());
    if (!strcmp(e->dtype, "BF16")) {
        for (size_t k = 0; k < n; k++) c->buf16[k] = moe_f32_to_bf16(c->buf[k]);
        *out = c->buf16;
    } else {
        *out = c->buf;
    }
    return MOE_OK;
}

/* Returns 0 on success. */
static int tg_write_qwen3_moe(const char *dir, const tg_model *m) {
    mkdir(dir, 0755);
    char path[1024], name[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"model_type\": \"qwen3_moe\", \"hidden_size\": %d, \"num_hidden_layers\": %d, "
               "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, "
               "\"num_experts\": %d, \"num_experts_per_tok\": %d, \"moe_intermediate_size\": %d, "
               "\"intermediate_size\": %d, \"norm_topk_prob\": true, \"max_position_embeddings\": 4096, "
               "\"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, "
               "\"decoder_sparse_step\": 1, \"mlp_only_layers\": []}\n",
            m->hidden, m->layers, m->heads, m->kv_heads, m->head_dim, m->vocab, m->experts, m->top_k, m->moe_ff,
            m->moe_ff);
    fclose(f);
    tg_ctx c = {m, NULL, 0, 0, NULL, NULL};
    tg_state = 0x9E3779B97F4A7C15ull ^ m->seed;
    int d = m->hidden, qd = m->heads * m->head_dim, kvd = m->kv_heads * m->head_dim;
    tg_add(&c, "model.embed_tokens.weight", m->vocab, d);
    for (int l = 0; l < m->layers; l++) {
#define TG(fmt, r, cc) do { snprintf(name, sizeof name, fmt, l); tg_add(&c, name, r, cc); } while (0)
        TG("model.layers.%d.input_layernorm.weight", d, 0);
        TG("model.layers.%d.post_attention_layernorm.weight", d, 0);
        TG("model.layers.%d.self_attn.q_proj.weight", qd, d);
        TG("model.layers.%d.self_attn.k_proj.weight", kvd, d);
        TG("model.layers.%d.self_attn.v_proj.weight", kvd, d);
        TG("model.layers.%d.self_attn.o_proj.weight", d, qd);
        TG("model.layers.%d.self_attn.q_norm.weight", m->head_dim, 0);
        TG("model.layers.%d.self_attn.k_norm.weight", m->head_dim, 0);
        TG("model.layers.%d.mlp.gate.weight", m->experts, d);
#undef TG
        for (int e = 0; e < m->experts; e++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, e); tg_add(&c, name, m->moe_ff, d);
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.up_proj.weight", l, e); tg_add(&c, name, m->moe_ff, d);
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.down_proj.weight", l, e); tg_add(&c, name, d, m->moe_ff);
        }
    }
    tg_add(&c, "model.norm.weight", d, 0);
    tg_add(&c, "lm_head.weight", m->vocab, d);
    size_t maxn = 0;
    for (int i = 0; i < c.n; i++) {
        size_t n = (size_t)c.e[i].shape[0] * (c.e[i].ndim == 2 ? (size_t)c.e[i].shape[1] : 1);
        if (n > maxn) maxn = n;
    }
    c.buf = malloc(maxn * 4);
    c.buf16 = malloc(maxn * 2);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    moe_status st = moe_st_write(path, c.e, c.n, NULL, NULL, 0, tg_data, &c);
    for (int i = 0; i < c.n; i++) free((char *)c.e[i].name);
    free(c.e); free(c.buf); free(c.buf16);
    return st == MOE_OK ? 0 : -1;
}
#endif
