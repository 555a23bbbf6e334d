/* upcycle.c - dense checkpoint -> MoE checkpoint (see upcycle.h). */
#include "train/upcycle.h"
#include "core/alloc.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include "io/weights.h"
#include "model/config.h"
#include "moe/router.h"
#include "train/checkpoint.h"
#include "train/tparams.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The dense model's shape into c, refusing what the training model does not have. */
static moe_status shape_from(const char *src, const moe_config *d, moe_tconfig *c) {
    const char *p = d->config_path;
    for (int l = 0; l < d->n_layers; l++)
        if (d->ffn_kind[l] == MOE_FFN_MOE) return moe_fail(MOE_EINPUT, "%s: layer %d is already a MoE layer", p, l);
    if (d->mla) return moe_fail(MOE_EINPUT, "%s: multi-head latent attention cannot be trained by moe", p);
    if (d->qkv_bias || d->o_bias) return moe_fail(MOE_EINPUT, "%s: attention biases cannot be trained by moe", p);
    if (d->qk_norm == MOE_QKNORM_FULL) return moe_fail(MOE_EINPUT, "%s: full-width q/k norms cannot be trained by moe", p);
    if (strcmp(d->rope.type, "default") != 0)
        return moe_fail(MOE_EINPUT, "%s: rope scaling \"%s\" cannot be trained by moe", p, d->rope.type);
    if (d->rope.layout != MOE_ROPE_PAIRS_HALF) return moe_fail(MOE_EINPUT, "%s: interleaved rope cannot be trained by moe", p);
    for (int l = 0; l < d->n_layers; l++)
        if (d->sliding_window[l]) return moe_fail(MOE_EINPUT, "%s: sliding-window attention cannot be trained by moe", p);
    c->vocab = d->vocab;
    c->d_model = d->hidden;
    c->n_layers = d->n_layers;
    c->n_heads = d->n_heads;
    c->n_kv_heads = d->n_kv_heads;
    c->head_dim = d->head_dim;
    c->d_ff = d->intermediate;
    c->d_expert = d->intermediate;
    c->n_dense_layers = 0;
    c->n_shared = 0;
    c->qk_norm = d->qk_norm == MOE_QKNORM_HEAD;
    c->rms_eps = d->rms_eps;
    c->rope_theta = d->rope.theta;
    snprintf(c->layout, sizeof c->layout, "auto");
    (void)src;
    return MOE_OK;
}

/* The dense tensor a new tensor copies, or NULL for a fresh router. */
static const char *source_name(const moe_tconfig *c, const char *name, int tied, char *buf, size_t cap) {
    const char *blk, *g, *u, *d;
    moe_tparams_names(c, &blk, &g, &u, &d);
    int l, e;
    char kind[32];
    char fmt[160];
    snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.experts.%%d.%%31[a-z_0-9].weight", blk);
    if (sscanf(name, fmt, &l, &e, kind) == 3) {
        const char *dense = !strcmp(kind, g) ? "gate_proj" : !strcmp(kind, u) ? "up_proj" : "down_proj";
        snprintf(buf, cap, "model.layers.%d.mlp.%s.weight", l, dense);
        return buf;
    }
    if (strstr(name, ".gate.weight") || strstr(name, "e_score_correction_bias")) return NULL;
    if (!strcmp(name, "lm_head.weight") && tied) return "model.embed_tokens.weight";
    return name;
}

/* The dense model's tokenizer files go along (a byte-level model gets its tokenizer from the saver). */
static moe_status copy_tokenizer(const char *src, moe_outdir *od) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[1024];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        if (access(from, F_OK) != 0) continue;
        MOE_TRY(moe_outdir_copy(od, files[i], from));
    }
    return MOE_OK;
}

moe_status moe_upcycle(const char *src, const char *dst, moe_tconfig *c) {
    moe_config d;
    MOE_TRY(moe_config_load(src, &d));
    MOE_TRY(shape_from(src, &d, c));
    if (c->n_experts < 1) return moe_fail(MOE_EUSAGE, "upcycling needs --experts >= 1");
    const moe_router_ops *ops = moe_router_find(c->router);
    if (ops && ops->expert_gate_factored)
        return moe_fail(MOE_EUSAGE, "router %s factors the gate projection and cannot start from copies of a dense FFN", c->router);
    /* the layout follows the dense model's q/k norms (upcycle has no --qk-norm or --layout to change it) */
    if (!c->qk_norm && ops && moe_router_native_layout(ops, "dots1"))
        return moe_fail(MOE_EUSAGE, "%s: router deepseek_v3 needs the dots1 layout, which has q/k norms, and this dense model "
                                    "has none (upcycle one trained with moe train --experts 0 --qk-norm 1)", d.config_path);
    if (!c->qk_norm && !c->norm_topk)
        return moe_fail(MOE_EUSAGE, "%s: a dense model without q/k norms becomes the mixtral layout, which always "
                                    "renormalises the top-k weights: --norm-topk 0 is not possible", d.config_path);
    MOE_TRY(moe_tconfig_finish(c));
    moe_tparams *p;
    MOE_TRY(moe_tparams_new(c, &p));
    moe_tparams_init(p, (uint64_t)c->seed);   /* the routers' fresh weights */
    moe_weights *w = NULL;
    moe_status st = moe_weights_open(src, &w);
    for (int i = 0; i < p->n && !st; i++) {
        moe_tparam *t = &p->t[i];
        char buf[160];
        const char *from = source_name(c, t->name, d.tie_embeddings, buf, sizeof buf);
        if (!from) continue;
        float *v;
        if ((st = moe_weights_get_f32(w, from, t->ndim, t->shape, &v)) != MOE_OK) break;
        memcpy(p->val + t->offset, v, t->numel * 4);
        moe_free(v);
    }
    /* one folder, staged and swapped in whole (src/io/out_dir.h) */
    moe_outdir od = {0};
    od.lock_fd = -1;
    if (!st) st = moe_outdir_open(&od, "OUT", dst);
    if (!st) st = moe_outdir_begin(&od);
    if (!st) st = moe_ckpt_write_model(p, &od);
    if (!st && c->vocab != 256) st = copy_tokenizer(src, &od);
    if (!st && c->vocab != 256) {
        /* `moe train --init DST` then encodes its data with the dense model's tokenizer (at its final place) */
        char staged[1024], tk[1024];
        snprintf(staged, sizeof staged, "%s/tokenizer.json", od.write);
        snprintf(tk, sizeof tk, "%s/tokenizer.json", od.final);
        if (access(staged, F_OK) == 0 && strlen(tk) < sizeof c->tokenizer) snprintf(c->tokenizer, sizeof c->tokenizer, "%s", tk);
    }
    if (!st) {
        /* train.json, so that `moe train --init DIR` picks up the shape */
        cJSON *tc = moe_tconfig_to_json(c);
        char *s = tc ? cJSON_Print(tc) : NULL;
        if (!s) st = moe_fail(MOE_ENOMEM, "out of memory");
        else {
            size_t len = strlen(s);
            s[len] = '\n';   /* the terminator becomes the final newline */
            st = moe_outdir_put(&od, "train.json", s, len + 1);
        }
        free(s);
        cJSON_Delete(tc);
    }
    if (!st) st = moe_outdir_commit(&od);
    moe_outdir_close(&od);
    moe_weights_close(w);
    moe_tparams_free(p);
    return st;
}
