/* make_bench_model.c - a random Mixtral-like model in any weight type, for benchmarking the types
 * (bench/bench_wtypes.sh). Weights are Gaussian / sqrt(fan-in), written by the dtype table's own
 * writer (`quantize`) for the chosen type; norms are 1, the router f32.
 *   make_bench_model OUT --type TYPE [--layers N] [--hidden H] [--ff F] [--experts E] [--top-k K]
 *                        [--vocab V] [--heads H] [--kv-heads H]
 * TYPE bf16 or f8_e4m3_b128 writes a Hugging Face folder (config.json + model.safetensors; FP8 as
 * F8_E4M3 weights with 128 x 128 weight_scale_inv tiles, as DeepSeek ships them); any type with a
 * GGUF name (ggml_q8_0, q4_k, mxfp4, f16, ...) writes the GGUF file OUT the way llama.cpp stores a
 * Mixtral. The defaults match bench/make_random_model.py's mixtral2g (about 1.1 G parameters). */
#include "core/alloc.h"
#include "core/error.h"
#include "core/dtype_traits.h"
#include "core/ggml_types.h"
#include "io/gguf.h"
#include "io/st_writer.h"
#include "moe.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct cfg { int layers, hidden, ff, experts, topk, vocab, heads, kv; } cfg;

typedef struct tens {
    char name[96];
    int ndim;
    int64_t shape[3];      /* outermost first */
    moe_dtype dt;
    int fp8_scale_of;      /* safetensors FP8: index of the weight this scale belongs to, else -1 */
    uint64_t seed;
} tens;

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* row r of tensor t as Gaussian floats (deterministic per row, so threads can fill rows in any order) */
static void fill_row(const tens *t, int64_t r, int64_t cols, float *x) {
    uint64_t s = mix(t->seed * 1000003ull + (uint64_t)r);
    float sd = 1.0f / sqrtf((float)cols);
    for (int64_t c = 0; c < cols; c += 2) {
        s = mix(s + 0x9e3779b97f4a7c15ull);
        double u = ((s >> 11) + 0.5) / 9007199254740992.0;
        s = mix(s + 0x9e3779b97f4a7c15ull);
        double v = ((s >> 11) + 0.5) / 9007199254740992.0;
        double rr = sqrt(-2 * log(u));
        x[c] = (float)(rr * cos(6.283185307179586 * v)) * sd;
        if (c + 1 < cols) x[c + 1] = (float)(rr * sin(6.283185307179586 * v)) * sd;
    }
}

static int64_t rows_of(const tens *t) { return t->ndim == 1 ? 1 : t->ndim == 2 ? t->shape[0] : t->shape[0] * t->shape[1]; }
static int64_t cols_of(const tens *t) { return t->shape[t->ndim - 1]; }
static uint64_t bytes_of(const tens *t) { return (uint64_t)rows_of(t) * moe_dtype_row_bytes(t->dt, cols_of(t)); }

/* FP8 tiles of tensor w: for each 128-row tile, the scale of each 128-column block (largest |x| / 448),
 * and (codes != NULL) the e4m3 codes of its rows against those scales */
static void fp8_tiles(const tens *w, float *scales, unsigned char *codes) {
    int64_t rows = rows_of(w), cols = cols_of(w), sc = cols / 128, tiles = (rows + 127) / 128;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < tiles; tile++) {
        float *x = malloc(sizeof(float) * 128 * (size_t)cols), *s = scales + tile * sc;
        int64_t r0 = tile * 128, nr = rows - r0 < 128 ? rows - r0 : 128;
        for (int64_t b = 0; b < sc; b++) s[b] = 0;
        for (int64_t r = 0; r < nr; r++) {
            fill_row(w, r0 + r, cols, x + r * cols);
            for (int64_t c = 0; c < cols; c++) s[c / 128] = fmaxf(s[c / 128], fabsf(x[r * cols + c]) / 448.0f);
        }
        for (int64_t r = 0; codes && r < nr; r++)
            for (int64_t c = 0; c < cols; c++) {
                float d = s[c / 128];
                codes[(size_t)(r0 + r) * cols + c] = moe_f32_to_e4m3(d > 0 ? x[r * cols + c] / d : 0);
            }
        free(x);
    }
}

/* the tensor's bytes in its type (norms: ones) */
static unsigned char *make_data(const tens *t, const tens *all) {
    uint64_t nb = bytes_of(t);
    unsigned char *buf = moe_alloc(nb + 64);
    if (!buf) return NULL;
    int64_t rows = rows_of(t), cols = cols_of(t);
    if (t->fp8_scale_of >= 0) { fp8_tiles(&all[t->fp8_scale_of], (float *)buf, NULL); return buf; }
    if (t->dt == MOE_F8_E4M3) {
        float *s = malloc(sizeof(float) * (size_t)((rows + 127) / 128 * (cols / 128)));
        fp8_tiles(t, s, buf);
        free(s);
        return buf;
    }
    const moe_dtype_traits *tr = moe_dtype_traits_of(t->dt);
    if (strstr(t->name, "norm")) {
        float *ones = malloc(sizeof(float) * (size_t)cols);
        for (int64_t c = 0; c < cols; c++) ones[c] = 1.0f;
        tr->quantize(ones, cols, buf);
        free(ones);
        return buf;
    }
    size_t rb = moe_dtype_row_bytes(t->dt, cols);
    #pragma omp parallel for schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; r++) {
        float x[16384];
        fill_row(t, r, cols, x);
        tr->quantize(x, cols, buf + (size_t)r * rb);
    }
    return buf;
}

/* ---- GGUF writer (little-endian, version 3, alignment 32) ---- */
static void put(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }
static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(FILE *f, uint64_t v) { put(f, &v, 8); }
static void put_str(FILE *f, const char *s) { put_u64(f, strlen(s)); put(f, s, strlen(s)); }
static void kv_u32(FILE *f, const char *k, uint32_t v) { put_str(f, k); put_u32(f, 4); put_u32(f, v); }
static void kv_f32(FILE *f, const char *k, float v) { put_str(f, k); put_u32(f, 6); put(f, &v, 4); }
static void kv_str(FILE *f, const char *k, const char *v) { put_str(f, k); put_u32(f, 8); put_str(f, v); }

static int write_gguf(const char *out, const cfg *c, tens *t, int n) {
    FILE *f = fopen(out, "wb");
    if (!f) { perror(out); return 1; }
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, (uint64_t)n);
    put_u64(f, 13);
    kv_str(f, "general.architecture", "llama");
    kv_u32(f, "llama.block_count", (uint32_t)c->layers);
    kv_u32(f, "llama.context_length", 4096);
    kv_u32(f, "llama.embedding_length", (uint32_t)c->hidden);
    kv_u32(f, "llama.feed_forward_length", (uint32_t)c->ff);
    kv_u32(f, "llama.attention.head_count", (uint32_t)c->heads);
    kv_u32(f, "llama.attention.head_count_kv", (uint32_t)c->kv);
    kv_f32(f, "llama.rope.freq_base", 1e6f);
    kv_f32(f, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_u32(f, "llama.expert_count", (uint32_t)c->experts);
    kv_u32(f, "llama.expert_used_count", (uint32_t)c->topk);
    kv_u32(f, "llama.rope.dimension_count", (uint32_t)(c->hidden / c->heads));
    kv_u32(f, "tokenizer.ggml.bos_token_id", 1);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        put_str(f, t[i].name);
        put_u32(f, (uint32_t)t[i].ndim);
        for (int d = t[i].ndim - 1; d >= 0; d--) put_u64(f, (uint64_t)t[i].shape[d]);
        put_u32(f, (uint32_t)moe_gguf_type_id(moe_dtype_traits_of(t[i].dt)->ggml_name));
        put_u64(f, off);
        off += (bytes_of(&t[i]) + 31) / 32 * 32;
    }
    long pos = ftell(f);
    static const char zeros[32];
    put(f, zeros, (size_t)((32 - pos % 32) % 32));
    for (int i = 0; i < n; i++) {
        unsigned char *d = make_data(&t[i], t);
        if (!d) { fprintf(stderr, "out of memory\n"); fclose(f); return 1; }
        put(f, d, bytes_of(&t[i]));
        put(f, zeros, (size_t)((32 - bytes_of(&t[i]) % 32) % 32));
        moe_free(d);
    }
    return fclose(f) != 0;
}

/* ---- safetensors folder ---- */
typedef struct st_job { tens *t; int n; unsigned char *cur; } st_job;
static moe_status st_data(void *user, int i, const void **out) {
    st_job *j = user;
    moe_free(j->cur);
    j->cur = make_data(&j->t[i], j->t);
    if (!j->cur) return moe_fail(MOE_ENOMEM, "out of memory");
    *out = j->cur;
    return MOE_OK;
}

static int write_st(const char *dir, const cfg *c, tens *t, int n, int fp8) {
    mkdir(dir, 0755);
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    if (!f) { perror(p); return 1; }
    fprintf(f, "{\"model_type\": \"mixtral\", \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
               "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"num_local_experts\": %d, \"num_experts_per_tok\": %d, "
               "\"vocab_size\": %d, \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, "
               "\"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"bos_token_id\": 1%s}\n",
            c->hidden, c->ff, c->layers, c->heads, c->kv, c->experts, c->topk, c->vocab,
            fp8 ? ", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]}" : "");
    fclose(f);
    moe_st_entry *e = calloc((size_t)n, sizeof *e);
    for (int i = 0; i < n; i++) {
        e[i].name = t[i].name;
        e[i].dtype = t[i].dt == MOE_F8_E4M3 ? "F8_E4M3" : t[i].dt == MOE_BF16 ? "BF16" : "F32";
        e[i].ndim = t[i].ndim;
        memcpy(e[i].shape, t[i].shape, sizeof t[i].shape);
        e[i].nbytes = bytes_of(&t[i]);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_job j = {t, n, NULL};
    moe_status st = moe_st_write(p, e, n, NULL, NULL, 0, st_data, &j);
    moe_free(j.cur);
    free(e);
    if (st) fprintf(stderr, "%s\n", moe_last_error());
    return st != MOE_OK;
}

int main(int argc, char **argv) {
    cfg c = {11, 1024, 3584, 8, 2, 32000, 16, 4};
    const char *out = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        int *v = !strcmp(argv[i], "--layers") ? &c.layers : !strcmp(argv[i], "--hidden") ? &c.hidden : !strcmp(argv[i], "--ff") ? &c.ff
               : !strcmp(argv[i], "--experts") ? &c.experts : !strcmp(argv[i], "--top-k") ? &c.topk : !strcmp(argv[i], "--vocab") ? &c.vocab
               : !strcmp(argv[i], "--heads") ? &c.heads : !strcmp(argv[i], "--kv-heads") ? &c.kv : NULL;
        if (v && i + 1 < argc) *v = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--type") && i + 1 < argc) type = argv[++i];
        else if (argv[i][0] != '-' && !out) out = argv[i];
        else { fprintf(stderr, "make_bench_model: bad argument %s\n", argv[i]); return 1; }
    }
    int dt = type ? moe_dtype_from_name(type) : -1;
    if (!out || dt < 0) { fprintf(stderr, "usage: make_bench_model OUT --type TYPE [--layers N] ...\n"); return 1; }
    int st = dt == MOE_BF16 || dt == MOE_F8_E4M3_B128, fp8 = dt == MOE_F8_E4M3_B128;
    if (!st && !moe_dtype_traits_of((moe_dtype)dt)->ggml_name) { fprintf(stderr, "make_bench_model: %s has no GGUF type\n", type); return 1; }
    moe_dtype mat = fp8 ? MOE_F8_E4M3 : (moe_dtype)dt, small = st ? (fp8 ? MOE_BF16 : MOE_BF16) : MOE_F32;
    int H = c.hidden, kvd = c.kv * (c.hidden / c.heads);
    tens *t = calloc((size_t)(c.layers * (c.experts * 6 + 16) + 8), sizeof *t);
    int n = 0;
    uint64_t seed = 1;
#define ADD(NM, ND, S0, S1, S2, DT)                                                                      \
    do {                                                                                                \
        tens *x = &t[n++];                                                                              \
        snprintf(x->name, sizeof x->name, "%s", NM);                                                    \
        x->ndim = ND; x->shape[0] = S0; x->shape[1] = S1; x->shape[2] = S2; x->dt = DT;                \
        x->fp8_scale_of = -1; x->seed = seed++;                                                         \
        if (fp8 && DT == MOE_F8_E4M3) {                                                                 \
            tens *s = &t[n++];                                                                          \
            snprintf(s->name, sizeof s->name, "%.80s_scale_inv", NM);                                    \
            s->ndim = 2; s->shape[0] = ((ND == 2 ? S0 : S1) + 127) / 128; s->shape[1] = (ND == 2 ? S1 : S2) / 128; \
            s->dt = MOE_F32; s->fp8_scale_of = n - 2; s->seed = 0;                                      \
        }                                                                                               \
    } while (0)
    char nm[96];
    if (st) {
        ADD("model.embed_tokens.weight", 2, c.vocab, H, 0, MOE_BF16);
        ADD("model.norm.weight", 1, H, 0, 0, small);
        ADD("lm_head.weight", 2, c.vocab, H, 0, MOE_BF16);
        for (int l = 0; l < c.layers; l++) {
            const char *pn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
            int64_t po[4] = {H, kvd, kvd, H};
            snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l); ADD(nm, 1, H, 0, 0, small);
            snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l); ADD(nm, 1, H, 0, 0, small);
            for (int k = 0; k < 4; k++) { snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.weight", l, pn[k]); ADD(nm, 2, po[k], H, 0, mat); }
            snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.gate.weight", l); ADD(nm, 2, c.experts, H, 0, MOE_BF16);
            for (int e = 0; e < c.experts; e++) {
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e); ADD(nm, 2, c.ff, H, 0, mat);
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, e); ADD(nm, 2, c.ff, H, 0, mat);
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, e); ADD(nm, 2, H, c.ff, 0, mat);
            }
        }
        return write_st(out, &c, t, n, fp8);
    }
    ADD("token_embd.weight", 2, c.vocab, H, 0, mat);
    ADD("output_norm.weight", 1, H, 0, 0, MOE_F32);
    ADD("output.weight", 2, c.vocab, H, 0, mat);
    for (int l = 0; l < c.layers; l++) {
        const char *pn[4] = {"attn_q", "attn_k", "attn_v", "attn_output"};
        int64_t po[4] = {H, kvd, kvd, H};
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l); ADD(nm, 1, H, 0, 0, MOE_F32);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l); ADD(nm, 1, H, 0, 0, MOE_F32);
        for (int k = 0; k < 4; k++) { snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, pn[k]); ADD(nm, 2, po[k], H, 0, mat); }
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l); ADD(nm, 2, c.experts, H, 0, MOE_F32);
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", l); ADD(nm, 3, c.experts, c.ff, H, mat);
        snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", l); ADD(nm, 3, c.experts, c.ff, H, mat);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", l); ADD(nm, 3, c.experts, H, c.ff, mat);
    }
    return write_gguf(out, &c, t, n);
}
