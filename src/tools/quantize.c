/* quantize.c - a quantized copy of a model folder (see quantize.h for what and why). */
#include "tools/quantize.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/dtype_traits.h"
#include "core/quant.h"
#include "io/atomic_file.h"
#include "io/out_dir.h"
#include "io/json.h"
#include "io/quant_meta.h"
#include "io/st_writer.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct qt {
    const moe_tensor *src;
    int qtype;        /* MOE_Q8_0 / MOE_Q4, or -1: copy */
    int expert;       /* index into the expert table, or -1 */
} qt;

typedef struct job {
    moe_model *m;
    const char *out_path;
    qt *t;            /* in output order */
    moe_st_entry *e;
    int n;
    unsigned char *obuf;
    float *row;       /* [threads][max cols] */
    size_t row_cap;
    uint64_t done_bytes, total_bytes, next_report;
    FILE *log;
} job;

/* Sources must be plain float matrices (quantizing a quantized model again would compound errors). */
static int is_matrix_dtype(moe_dtype d) { return moe_dtype_is_matrix(d) && !moe_dtype_is_quant(d); }

static void upper(char *dst, const char *src, size_t cap) {
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++) dst[i] = (char)toupper((unsigned char)src[i]);
    dst[i] = 0;
}

static moe_status quantize_tensor(job *j, const moe_tensor *t, int qtype, unsigned char *out) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    size_t rb = moe_quant_row_bytes((moe_dtype)qtype, cols), srb = moe_dtype_row_bytes(t->dtype, cols);
    int bad = -1;
    #pragma omp parallel for schedule(static) reduction(max:bad)
    for (int64_t r = 0; r < rows; r++) {
        float *row = j->row + (size_t)omp_get_thread_num() * j->row_cap;
        moe_rows_to_f32(t->dtype, (const char *)t->data + (size_t)r * srb, 1, cols, row);
        for (int64_t c = 0; c < cols; c++)
            if (!isfinite(row[c]) && bad < 0) bad = (int)(r < INT_MAX ? r : INT_MAX);
        moe_quantize_row((moe_dtype)qtype, row, cols, out + (size_t)r * rb);
    }
    if (bad >= 0) return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has a NaN or infinite weight in row %d", j->m->weights->dir, t->name, bad);
    return MOE_OK;
}

static moe_status data_of(void *user, int i, const void **out) {
    job *j = user;
    const qt *q = &j->t[i];
    if (q->qtype < 0) {
        *out = q->src->data;
    } else {
        MOE_TRY(quantize_tensor(j, q->src, q->qtype, j->obuf));
        *out = j->obuf;
    }
    j->done_bytes += q->src->nbytes;
    if (j->log && isatty(fileno(j->log)) && j->done_bytes >= j->next_report) {
        fprintf(j->log, "\rquantize: %3.0f%%", 100.0 * (double)j->done_bytes / (double)(j->total_bytes ? j->total_bytes : 1));
        fflush(j->log);
        j->next_report = j->done_bytes + j->total_bytes / 50;
    }
    return MOE_OK;
}

/* Squared error of quantizing t to qtype, summed over all weights. */
static double quant_error(job *j, const moe_tensor *t, int qtype) {
    int64_t rows = t->shape[0], cols = t->shape[1];
    size_t srb = moe_dtype_row_bytes(t->dtype, cols);
    double err = 0;
    #pragma omp parallel for schedule(static) reduction(+:err)
    for (int64_t r = 0; r < rows; r++) {
        float *row = j->row + (size_t)omp_get_thread_num() * j->row_cap;
        float *deq = row + cols;
        unsigned char *qb = (unsigned char *)(deq + cols); /* row_cap leaves room for one quantized row */
        moe_rows_to_f32(t->dtype, (const char *)t->data + (size_t)r * srb, 1, cols, row);
        moe_quantize_row((moe_dtype)qtype, row, cols, qb);
        moe_dequantize_row((moe_dtype)qtype, qb, cols, deq);
        double e = 0;
        for (int64_t c = 0; c < cols; c++) e += ((double)row[c] - deq[c]) * ((double)row[c] - deq[c]);
        err += e;
    }
    return err;
}

typedef struct cand { int expert; double gain; } cand;
static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return x->gain > y->gain ? -1 : x->gain < y->gain ? 1 : x->expert - y->expert;
}

moe_status moe_copy_model_files(const char *src_dir, const char *dst_dir) {
    static const char *k_files[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                    "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model"};
    for (size_t i = 0; i < sizeof k_files / sizeof *k_files; i++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/%s", src_dir, k_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dst_dir, k_files[i]);
        struct stat sb;
        if (stat(src, &sb) != 0) continue;
        char *buf;
        size_t len;
        MOE_TRY(moe_read_file(src, 1u << 30, &buf, &len));
        moe_atomic_file af;
        moe_status st = moe_atomic_open(&af, dst);
        if (st == MOE_OK) {
            fwrite(buf, 1, len, af.f);
            st = moe_atomic_commit(&af);
        }
        free(buf);
        MOE_TRY(st);
    }
    return MOE_OK;
}

moe_status moe_quantize_model(moe_model *m, const char *out_dir, const moe_quantize_options *o) {
    const moe_config *c = &m->cfg;
    moe_weights *W = m->weights;
    if (o->type != MOE_QUANT_MIXED && (o->type < 0 || moe_quant_type_from_name(moe_dtype_name((moe_dtype)o->type)) < 0))
        return moe_fail(MOE_EUSAGE, "quantize: unknown type");
    if (strcmp(W->format, "safetensors"))
        return moe_fail(MOE_EUSAGE, "%s: moe quantize reads Hugging Face folders, not %s files", W->dir, W->format);
    int any_moe = 0;
    for (int l = 0; l < c->n_layers; l++) any_moe |= c->ffn_kind[l] == MOE_FFN_MOE;
    if (any_moe && !c->expert_gate) /* granite: its checkpoints always fuse each layer's experts */
        return moe_fail(MOE_EUSAGE, "%s: %s keeps its experts fused (input_linear / gate_up_proj), which cannot be "
                        "quantized yet", W->dir, c->model_type);
    char rin[PATH_MAX];
    if (!realpath(W->dir, rin)) return moe_fail(MOE_EIO, "%s: cannot resolve path", W->dir);
    struct stat sb;
    if (stat(out_dir, &sb) == 0) {
        char rout[PATH_MAX];
        if (!realpath(out_dir, rout)) return moe_fail(MOE_EIO, "%s: cannot resolve path", out_dir);
        if (!strcmp(rin, rout)) return moe_fail(MOE_EUSAGE, "%s: the output folder must differ from the model folder", out_dir);
    }
    /* the whole folder is staged and swapped in at the end (src/io/out_dir.h), under its lock */
    moe_outdir od;
    MOE_TRY(moe_outdir_open(&od, "OUT", out_dir));
    moe_status ost = moe_outdir_begin(&od);
    if (ost) { moe_outdir_close(&od); return ost; }

    /* name -> expert table index (layer * n_experts + expert) * 3 + matrix */
    int n_exp = 0;
    for (int l = 0; l < c->n_layers; l++) n_exp += c->ffn_kind[l] == MOE_FFN_MOE ? c->n_experts : 0;
    moe_strmap ex;
    char **ex_names = calloc((size_t)n_exp * 3 + 1, sizeof *ex_names);
    int *ex_key = calloc((size_t)n_exp + 1, sizeof *ex_key);
    job j = {0};
    moe_status st = MOE_OK;
    double *err4 = NULL, *err8 = NULL;
    uint64_t *b4 = NULL, *b8 = NULL;
    int *etype = NULL, *t_of = NULL;
    cand *cands = NULL;
    if (!ex_names || !ex_key || moe_strmap_init(&ex, (size_t)n_exp * 3 + 1)) {
        free(ex_names); free(ex_key);
        moe_outdir_close(&od);
        return moe_fail(MOE_ENOMEM, "out of memory");
    }
    const char *mat[3] = {c->expert_gate, c->expert_up, c->expert_down};
    int k = 0;
    for (int l = 0; l < c->n_layers && st == MOE_OK; l++) {
        if (c->ffn_kind[l] != MOE_FFN_MOE) continue;
        for (int e = 0; e < c->n_experts && st == MOE_OK; e++, k++) {
            ex_key[k] = l * c->n_experts + e;
            for (int i = 0; i < 3; i++) {
                char name[256];
                snprintf(name, sizeof name, "model.layers.%d.%s.experts.%d.%s.weight", l, c->moe_block, e, mat[i]);
                if (!(ex_names[k * 3 + i] = moe_strdup(name)) ||
                    moe_strmap_put(&ex, ex_names[k * 3 + i], strlen(name), k * 3 + i) < 0)
                    st = moe_fail(MOE_ENOMEM, "out of memory");
            }
        }
    }
    /* classify every tensor; experts go last, in (layer, expert, gate/up/down) order */
    j.m = m;
    j.log = o->log;
    j.t = calloc((size_t)W->n + 1, sizeof *j.t);
    j.e = calloc((size_t)W->n + 1, sizeof *j.e);
    t_of = malloc(sizeof *t_of * ((size_t)n_exp * 3 + 1));
    if (st == MOE_OK && (!j.t || !j.e || !t_of)) st = moe_fail(MOE_ENOMEM, "out of memory");
    int64_t max_cols = 1;
    size_t max_out = 1;
    for (int i = 0; i < n_exp * 3 && t_of; i++) t_of[i] = -1;
    for (int i = 0; i < W->n && st == MOE_OK; i++) {
        const moe_tensor *t = W->list[i];
        if (moe_dtype_is_quant(t->dtype)) {
            st = moe_fail(MOE_EUSAGE, "%s: tensor \"%s\" is already quantized (%s); quantize the original model",
                          W->dir, t->name, moe_dtype_name(t->dtype));
            break;
        }
        int xi = moe_strmap_gets(&ex, t->name);
        if (xi >= 0) { t_of[xi] = i; continue; }
        qt *q = &j.t[j.n++];
        q->src = t;
        q->expert = -1;
        size_t nl = strlen(t->name);
        int eligible = t->ndim == 2 && is_matrix_dtype(t->dtype) && nl > 7 && !strcmp(t->name + nl - 7, ".weight") &&
                       strstr(t->name, "_proj") && !strstr(t->name, "embed_tokens") && !strstr(t->name, "lm_head");
        q->qtype = eligible ? (o->type == MOE_QUANT_MIXED ? MOE_Q8_0 : o->type) : -1;
    }
    for (int x = 0; x < n_exp * 3 && st == MOE_OK; x++) {
        if (t_of[x] < 0) {
            st = moe_fail(MOE_EUSAGE, "%s: no tensor \"%s\"; experts saved fused (transformers 5 gate_up_proj/down_proj) "
                          "cannot be quantized yet", W->dir, ex_names[x]);
            break;
        }
        qt *q = &j.t[j.n++];
        q->src = W->list[t_of[x]];
        q->expert = x / 3;
        q->qtype = o->type == MOE_QUANT_MIXED ? MOE_Q4 : o->type; /* mixed: decided below */
        if (!is_matrix_dtype(q->src->dtype) || q->src->ndim != 2) q->qtype = -1;
    }
    for (int i = 0; i < j.n; i++) {
        if (j.t[i].src->ndim == 2 && j.t[i].src->shape[1] > max_cols) max_cols = j.t[i].src->shape[1];
    }
    j.row_cap = (size_t)max_cols * 3 + 64;
    int threads = omp_get_max_threads();
    if (st == MOE_OK && !(j.row = moe_alloc(sizeof(float) * j.row_cap * (size_t)(threads + 1))))
        st = moe_fail(MOE_ENOMEM, "out of memory");

    /* mixed: pick each expert's width under the budget */
    int n_q8 = 0;
    if (st == MOE_OK && o->type == MOE_QUANT_MIXED) {
        err4 = calloc((size_t)n_exp + 1, sizeof *err4);
        err8 = calloc((size_t)n_exp + 1, sizeof *err8);
        b4 = calloc((size_t)n_exp + 1, sizeof *b4);
        b8 = calloc((size_t)n_exp + 1, sizeof *b8);
        etype = malloc(sizeof *etype * ((size_t)n_exp + 1));
        cands = calloc((size_t)n_exp + 1, sizeof *cands);
        if (!err4 || !err8 || !b4 || !b8 || !etype || !cands) st = moe_fail(MOE_ENOMEM, "out of memory");
        uint64_t fixed = 0, total4 = 0;
        for (int i = 0; i < j.n && st == MOE_OK; i++) {
            qt *q = &j.t[i];
            if (q->expert < 0) {
                fixed += q->qtype < 0 ? q->src->nbytes : (uint64_t)q->src->shape[0] * moe_quant_row_bytes((moe_dtype)q->qtype, q->src->shape[1]);
                continue;
            }
            if (q->qtype < 0) { fixed += q->src->nbytes; continue; }
            int x = q->expert;
            b4[x] += (uint64_t)q->src->shape[0] * moe_quant_row_bytes(MOE_Q4, q->src->shape[1]);
            b8[x] += (uint64_t)q->src->shape[0] * moe_quant_row_bytes(MOE_Q8_0, q->src->shape[1]);
            err4[x] += quant_error(&j, q->src, MOE_Q4);
            err8[x] += quant_error(&j, q->src, MOE_Q8_0);
            if (o->log && isatty(fileno(o->log)) && (i & 63) == 0) {
                fprintf(o->log, "\rquantize: measuring errors %d/%d", i, j.n);
                fflush(o->log);
            }
        }
        for (int x = 0; x < n_exp; x++) total4 += b4[x];
        if (st == MOE_OK && (o->budget <= 0 || fixed + total4 > (uint64_t)o->budget))
            st = moe_fail(MOE_EUSAGE, "--budget %lld bytes is below the smallest mixed model (%llu bytes: every expert q4, "
                          "other matrices q8_0)", (long long)o->budget, (unsigned long long)(fixed + total4));
        uint64_t used = fixed + total4;
        double fsum = 0;
        for (int x = 0; x < n_exp && o->expert_freq; x++) fsum += o->expert_freq[ex_key[x]];
        for (int x = 0; x < n_exp && st == MOE_OK; x++) {
            /* frequency as a share of the layer's uniform share; +1e-3 keeps never-seen experts ordered by error */
            double f = o->expert_freq && fsum > 0 ? o->expert_freq[ex_key[x]] / fsum * n_exp + 1e-3 : 1.0;
            cands[x].expert = x;
            cands[x].gain = f * (err4[x] - err8[x]) / (double)(b8[x] - b4[x] ? b8[x] - b4[x] : 1);
            etype[x] = MOE_Q4;
        }
        if (st == MOE_OK) {
            qsort(cands, (size_t)n_exp, sizeof *cands, cmp_cand);
            for (int r = 0; r < n_exp; r++) {
                int x = cands[r].expert;
                if (used + (b8[x] - b4[x]) > (uint64_t)o->budget) continue;
                used += b8[x] - b4[x];
                etype[x] = MOE_Q8_0;
                n_q8++;
            }
            for (int i = 0; i < j.n; i++)
                if (j.t[i].expert >= 0 && j.t[i].qtype >= 0) j.t[i].qtype = etype[j.t[i].expert];
            if (o->log) {
                fprintf(o->log, "%squantize: mixed: %d of %d experts q8_0, the rest q4; %llu of %lld budget bytes\n", isatty(fileno(o->log)) ? "\r" : "",
                        n_q8, n_exp, (unsigned long long)used, (long long)o->budget);
                for (int l = 0; l < c->n_layers; l++) {
                    if (c->ffn_kind[l] != MOE_FFN_MOE) continue;
                    int cnt = 0;
                    for (int x = 0; x < n_exp; x++) cnt += ex_key[x] / c->n_experts == l && etype[x] == MOE_Q8_0;
                    fprintf(o->log, "quantize: layer %d: %d of %d experts q8_0\n", l, cnt, c->n_experts);
                }
            }
        }
    }

    /* the entries and the moe_quant table */
    cJSON *meta = cJSON_CreateObject(), *tab = meta ? cJSON_AddObjectToObject(meta, "tensors") : NULL;
    if (st == MOE_OK && (!meta || !tab || !cJSON_AddNumberToObject(meta, "version", 1))) st = moe_fail(MOE_ENOMEM, "out of memory");
    for (int i = 0; i < j.n && st == MOE_OK; i++) {
        const moe_tensor *t = j.t[i].src;
        moe_st_entry *e = &j.e[i];
        e->name = t->name;
        if (j.t[i].qtype < 0) {
            static char names[MOE_DTYPE_COUNT][16];
            upper(names[t->dtype], moe_dtype_name(t->dtype), sizeof names[0]);
            e->dtype = names[t->dtype];
            e->ndim = t->ndim;
            memcpy(e->shape, t->shape, sizeof e->shape);
            e->nbytes = t->nbytes;
        } else {
            size_t rb = moe_quant_row_bytes((moe_dtype)j.t[i].qtype, t->shape[1]);
            e->dtype = "U8";
            e->ndim = 2;
            e->shape[0] = t->shape[0];
            e->shape[1] = (int64_t)rb;
            e->nbytes = (uint64_t)t->shape[0] * rb;
            if (e->nbytes > max_out) max_out = e->nbytes;
            cJSON *a = cJSON_CreateArray();
            if (!a || !cJSON_AddItemToObject(tab, t->name, a)) { cJSON_Delete(a); st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
            cJSON_AddItemToArray(a, cJSON_CreateString(moe_dtype_name((moe_dtype)j.t[i].qtype)));
            cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->shape[0]));
            cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->shape[1]));
        }
        j.total_bytes += t->nbytes;
    }
    char *meta_s = st == MOE_OK ? cJSON_PrintUnformatted(meta) : NULL;
    cJSON_Delete(meta);
    if (st == MOE_OK && !meta_s) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (st == MOE_OK && !(j.obuf = moe_alloc(max_out))) st = moe_fail(MOE_ENOMEM, "out of memory for %zu bytes", max_out);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", od.write);
    if (st == MOE_OK) {
        const char *mk[2] = {"format", MOE_QUANT_META_KEY}, *mv[2] = {"pt", meta_s};
        st = moe_st_write(path, j.e, j.n, mk, mv, 2, data_of, &j);
        if (o->log && isatty(fileno(o->log))) fprintf(o->log, "\r");
    }
    if (st == MOE_OK) st = moe_copy_model_files(W->dir, od.write);
    if (st == MOE_OK) st = moe_outdir_commit(&od);
    moe_outdir_close(&od);
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    if (st == MOE_OK && o->log) {
        uint64_t out_bytes = 0;
        for (int i = 0; i < j.n; i++) out_bytes += j.e[i].nbytes;
        fprintf(o->log, "quantize: wrote %s: %.1f MiB of tensors from %.1f MiB\n", path, out_bytes / 1048576.0,
                j.total_bytes / 1048576.0);
    }
    free(meta_s);
    for (int i = 0; i < n_exp * 3; i++) free(ex_names[i]);
    free(ex_names); free(ex_key); free(t_of);
    moe_strmap_free(&ex);
    free(j.t); free(j.e);
    moe_free(j.row); moe_free(j.obuf);
    free(err4); free(err8); free(b4); free(b8); free(etype); free(cands);
    return st;
}
