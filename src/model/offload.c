/* offload.c - turning a loaded model's routed experts into an on-disk store (moe_model_load_opts).
 * The model is bound as usual: every tensor is validated and mapped, but mapping costs no memory until
 * a page is touched. Then each expert's three matrices are located in their safetensors file (their
 * data pointers point into that file's map) and handed to the disk store, which from then on reads
 * them with pread into its slots. The expert pages of the map are never touched, so they never become
 * resident: the process holds the non-expert weights, the KV cache and at most the budget of experts. */
#include "core/error.h"
#include "model/model.h"
#include "moe/expert_store_disk.h"
#include "moe/predictor.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int file_of(const moe_weights *w, const void *p, uint64_t *off) {
    for (int i = 0; i < w->n_files; i++) {
        const moe_st_file *f = w->files[i];
        const unsigned char *b = f->map;
        if (b && (const unsigned char *)p >= b && (const unsigned char *)p < b + f->size) {
            *off = (uint64_t)((const unsigned char *)p - b);
            return i;
        }
    }
    return -1;
}

/* Bind a fitted predictor's tensors to the MoE layers (they stay in the predictor file's map). */
static moe_status attach_predictor(moe_model *m, const char *path) {
    const moe_config *c = &m->cfg;
    int L = c->n_layers;
    unsigned char *is_moe = malloc((size_t)L);
    const float **w = malloc(sizeof *w * 2 * (size_t)L), **b = malloc(sizeof *b * 2 * (size_t)L);
    moe_status st = is_moe && w && b ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
    for (int l = 0; st == MOE_OK && l < L; l++) is_moe[l] = c->ffn_kind[l] == MOE_FFN_MOE;
    if (st == MOE_OK) st = moe_st_open(path, &m->predictor);
    if (st == MOE_OK) st = moe_predictor_bind(m->predictor, L, is_moe, c->n_experts, c->hidden, w, b);
    for (int l = 0; st == MOE_OK && l < L; l++)
        for (int g = 0; g < 2 && is_moe[l]; g++) {
            m->blocks[l].moe.pred_w[g] = w[2 * l + g];
            m->blocks[l].moe.pred_b[g] = b[2 * l + g];
        }
    free(is_moe); free(w); free(b);
    return st;
}

static moe_status offload(moe_model *m, const moe_load_options *o) {
    const moe_config *c = &m->cfg;
    const moe_cache_policy *pol = moe_cache_policy_find(o->cache ? o->cache : "lru");
    if (!pol) return moe_fail(MOE_EUSAGE, "unknown cache policy \"%.40s\" (choose from %s)", o->cache, moe_cache_policy_names());
    int n_moe = 0;
    for (int l = 0; l < c->n_layers; l++) n_moe += c->ffn_kind[l] == MOE_FFN_MOE;
    if (!n_moe) return moe_fail(MOE_EUSAGE, "%s: a dense model has no routed experts to keep on disk", m->weights->dir);
    if (c->experts_in_out)   /* transposed into memory at load (model.c): nothing left to read from disk */
        return moe_fail(MOE_EUSAGE, "%s: %s stores its experts [in][out], which moe transposes into memory at load, so they "
                        "cannot be kept on disk under an expert budget (--mem-budget)", m->weights->dir, c->model_type);
    const char **paths = malloc(sizeof *paths * (size_t)m->weights->n_files);
    if (!paths) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int i = 0; i < m->weights->n_files; i++) paths[i] = m->weights->files[i]->path;
    moe_disk_store_config cfg = {c->n_layers, c->n_experts, c->top_k, o->expert_budget, pol, o->prefetch,
                                 !o->no_predict, o->direct_io, o->io_threads};
    moe_store *ds = NULL;
    moe_status st = moe_store_disk_new(&cfg, paths, m->weights->n_files, &ds);
    free(paths);
    for (int l = 0; st == MOE_OK && l < c->n_layers; l++) {
        if (c->ffn_kind[l] != MOE_FFN_MOE) continue;
        for (int e = 0; st == MOE_OK && e < c->n_experts; e++) {
            moe_ffn_weights w;
            if ((st = moe_store_acquire(m->store, l, e, &w)) != MOE_OK) break;
            const moe_tensor *t[3] = {&w.gate, &w.up, &w.down};
            int file[3];
            uint64_t off[3];
            for (int i = 0; i < 3 && st == MOE_OK; i++)
                if ((file[i] = file_of(m->weights, t[i]->data, &off[i])) < 0)
                    st = moe_fail(MOE_EINPUT, "%s: tensor \"%s\" is not in its file's map (misaligned there, or joined or "
                                  "repacked at load: MXFP4/FP8 pairs, gpt-oss experts), so its experts cannot be read "
                                  "from disk under --mem-budget", m->weights->dir, t[i]->name);
            if (st == MOE_OK) st = moe_store_disk_add(ds, l, e, file, &w, off);
        }
    }
    if (st == MOE_OK) st = moe_store_disk_finish(ds);
    if (st != MOE_OK) { moe_store_destroy(ds); return st; }
    /* Faults on the non-expert pages must not read ahead into expert pages: that would fill the page
     * cache (and a memory cgroup) with experts the store reads itself. */
    for (int i = 0; i < m->weights->n_files; i++)
        if (m->weights->files[i]->map) madvise(m->weights->files[i]->map, m->weights->files[i]->size, MADV_RANDOM);
    /* swap the stores and link each MoE layer to the next one for cross-layer prediction */
    moe_store_destroy(m->store);
    m->store = ds;
    moe_layer *prev = NULL;
    for (int l = 0; l < c->n_layers; l++) {
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) continue;
        moe_layer *L = &m->blocks[l].moe;
        L->store = ds;
        L->next = NULL;
        L->norm = m->blocks[l].ffn_norm;
        L->norm_eps = (float)c->rms_eps;
        if (prev) prev->next = L;
        prev = L;
    }
    return o->predictor ? attach_predictor(m, o->predictor) : MOE_OK;
}

moe_status moe_model_load_opts(const char *dir, const moe_load_options *opts, moe_model **out) {
    if (opts && opts->predictor && (!opts->prefetch || opts->no_predict))
        return moe_fail(MOE_EUSAGE, "a fitted predictor is used only by predicting prefetch (--prefetch without --no-predict)");
    if (opts && opts->no_mmap && opts->expert_budget > 0)
        return moe_fail(MOE_EUSAGE, "reading the weights into memory (--no-mmap) and an expert budget exclude each other");
    MOE_TRY(moe_model_load_mem(dir, opts && opts->no_mmap, out));
    if (!opts || opts->expert_budget <= 0) {
        if (opts && (opts->prefetch || opts->no_predict || opts->direct_io || opts->predictor ||
                     (opts->cache && strcmp(opts->cache, "lru")))) {
            moe_model_free(*out);
            *out = NULL;
            return moe_fail(MOE_EUSAGE, "cache, prefetch, predictor and direct I/O options need an expert memory budget");
        }
        return MOE_OK;
    }
    moe_status st = offload(*out, opts);
    if (st != MOE_OK) { moe_model_free(*out); *out = NULL; }
    return st;
}

void moe_model_offload_stats(const moe_model *m, moe_offload_stats *out) {
    moe_store_disk_stats(m->store, out);
}

void moe_model_offload_stats_reset(moe_model *m) { moe_store_disk_stats_reset(m->store); }
