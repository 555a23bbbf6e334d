/* tparams.c - the parameter table of a training model (see tparams.h). */
#include "train/tparams.h"
#include "core/alloc.h"
#include "core/error.h"
#include "moe/router.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    moe_tparams *p;
    int cap;
    moe_status st;
} builder;

static size_t add(builder *b, int ndim, int64_t rows, int64_t cols, int init, float std, int trainable,
                  const char *fmt, ...) {
    moe_tparams *p = b->p;
    if (b->st) return 0;
    if (p->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 256;
        moe_tparam *t = realloc(p->t, sizeof *t * (size_t)cap);
        if (!t) { b->st = moe_fail(MOE_ENOMEM, "out of memory"); return 0; }
        p->t = t;
        b->cap = cap;
    }
    moe_tparam *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    t->shape[0] = rows;
    t->shape[1] = ndim > 1 ? cols : 1;
    t->numel = (size_t)rows * (size_t)t->shape[1];
    t->offset = p->total;
    t->init = init;
    t->std = std;
    t->trainable = trainable;
    t->decay = trainable && ndim == 2;
    p->total += t->numel;
    if (trainable) p->n_trainable += t->numel;
    return t->offset;
}

void moe_tparams_names(const moe_tconfig *c, const char **block, const char **g, const char **u, const char **d) {
    int mix = !strcmp(c->layout, "mixtral");
    *block = mix ? "block_sparse_moe" : "mlp";
    *g = mix ? "w1" : "gate_proj";
    *u = mix ? "w3" : "up_proj";
    *d = mix ? "w2" : "down_proj";
}

/* Offsets of one layer (stored as size_t in the pointer slots, resolved later). */
typedef struct loff {
    size_t attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm, w1, w3, w2, gate, bias, ew1, ew3, ew2, sw1, sw3, sw2;
} loff;
#define NONE ((size_t)-1)

static float *at(float *base, size_t off) { return off == NONE ? NULL : base + off; }

static void resolve(moe_tview *v, float *base, const loff *lo, int L, size_t emb, size_t fn, size_t head) {
    v->embed = base + emb;
    v->final_norm = base + fn;
    v->lm_head = base + head;
    for (int l = 0; l < L; l++) {
        const loff *o = &lo[l];
        moe_tlayer *y = &v->layer[l];
        y->attn_norm = at(base, o->attn_norm); y->wq = at(base, o->wq); y->wk = at(base, o->wk);
        y->wv = at(base, o->wv); y->wo = at(base, o->wo); y->q_norm = at(base, o->q_norm);
        y->k_norm = at(base, o->k_norm); y->ffn_norm = at(base, o->ffn_norm);
        y->w1 = at(base, o->w1); y->w3 = at(base, o->w3); y->w2 = at(base, o->w2);
        y->gate = at(base, o->gate); y->bias = at(base, o->bias);
        y->ew1 = at(base, o->ew1); y->ew3 = at(base, o->ew3); y->ew2 = at(base, o->ew2);
        y->sw1 = at(base, o->sw1); y->sw3 = at(base, o->sw3); y->sw2 = at(base, o->sw2);
    }
}

moe_status moe_tparams_new(const moe_tconfig *c, moe_tparams **out) {
    *out = NULL;
    moe_tparams *p = calloc(1, sizeof *p);
    loff *lo = calloc((size_t)c->n_layers, sizeof *lo);
    if (!p || !lo) { free(p); free(lo); return moe_fail(MOE_ENOMEM, "out of memory"); }
    p->cfg = *c;
    builder b = {p, 0, MOE_OK};
    int d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, E = c->n_experts, de = c->d_expert;
    float std = (float)c->init_std, ostd = (float)(c->init_std / sqrt(2.0 * c->n_layers));
    const char *blk, *gn, *un, *dn;
    moe_tparams_names(c, &blk, &gn, &un, &dn);
    p->n_logits = E > 0 ? moe_tconfig_n_logits(c) : 0;
    size_t emb = add(&b, 2, c->vocab, d, MOE_INIT_NORMAL, std, 1, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        loff *o = &lo[l];
        const char *ap = "model.layers.%d.self_attn.%s";
        for (size_t *q = &o->attn_norm; q <= &o->sw2; q++) *q = NONE;
        o->attn_norm = add(&b, 1, d, 0, MOE_INIT_ONES, 0, 1, "model.layers.%d.input_layernorm.weight", l);
        o->wq = add(&b, 2, H * hd, d, MOE_INIT_NORMAL, std, 1, ap, l, "q_proj.weight");
        o->wk = add(&b, 2, KV * hd, d, MOE_INIT_NORMAL, std, 1, ap, l, "k_proj.weight");
        o->wv = add(&b, 2, KV * hd, d, MOE_INIT_NORMAL, std, 1, ap, l, "v_proj.weight");
        o->wo = add(&b, 2, d, H * hd, MOE_INIT_NORMAL, ostd, 1, ap, l, "o_proj.weight");
        if (c->qk_norm) {
            o->q_norm = add(&b, 1, hd, 0, MOE_INIT_ONES, 0, 1, ap, l, "q_norm.weight");
            o->k_norm = add(&b, 1, hd, 0, MOE_INIT_ONES, 0, 1, ap, l, "k_norm.weight");
        }
        o->ffn_norm = add(&b, 1, d, 0, MOE_INIT_ONES, 0, 1, "model.layers.%d.post_attention_layernorm.weight", l);
        if (!moe_tconfig_is_moe_layer(c, l)) {
            o->w1 = add(&b, 2, c->d_ff, d, MOE_INIT_NORMAL, std, 1, "model.layers.%d.mlp.gate_proj.weight", l);
            o->w3 = add(&b, 2, c->d_ff, d, MOE_INIT_NORMAL, std, 1, "model.layers.%d.mlp.up_proj.weight", l);
            o->w2 = add(&b, 2, d, c->d_ff, MOE_INIT_NORMAL, ostd, 1, "model.layers.%d.mlp.down_proj.weight", l);
            continue;
        }
        const moe_router_ops *ops = moe_router_find(c->router);
        int aoe = ops && ops->expert_gate_factored;
        if (p->n_logits > 0)
            o->gate = add(&b, 2, p->n_logits, d, MOE_INIT_NORMAL, std, 1, "model.layers.%d.%s.gate.weight", l, blk);
        if (ops && ops->score_bias)
            o->bias = add(&b, 1, E, 0, MOE_INIT_ZEROS, 0, 0, "model.layers.%d.%s.gate.e_score_correction_bias", l, blk);
        /* AoE: the gate projection is factored; gate.weight holds every expert's first factor [E*rank][d]
         * and experts.E.gate_proj.weight the second [de][rank] */
        int gcols = aoe ? c->aoe_rank : d;
        for (int e = 0; e < E; e++) {
            size_t off = add(&b, 2, de, gcols, MOE_INIT_NORMAL, aoe ? (float)(1.0 / sqrt((double)gcols)) : std, 1,
                             "model.layers.%d.%s.experts.%d.%s.weight", l, blk, e, gn);
            if (e == 0) o->ew1 = off;
        }
        for (int e = 0; e < E; e++) {
            size_t off = add(&b, 2, de, d, MOE_INIT_NORMAL, std, 1, "model.layers.%d.%s.experts.%d.%s.weight", l, blk, e, un);
            if (e == 0) o->ew3 = off;
        }
        for (int e = 0; e < E; e++) {
            size_t off = add(&b, 2, d, de, MOE_INIT_NORMAL, ostd, 1, "model.layers.%d.%s.experts.%d.%s.weight", l, blk, e, dn);
            if (e == 0) o->ew2 = off;
        }
        if (c->n_shared > 0) {
            int ds = c->n_shared * de;
            const char *sp = "model.layers.%d.%s.shared_experts.%s.weight";
            o->sw1 = add(&b, 2, ds, d, MOE_INIT_NORMAL, std, 1, sp, l, blk, "gate_proj");
            o->sw3 = add(&b, 2, ds, d, MOE_INIT_NORMAL, std, 1, sp, l, blk, "up_proj");
            o->sw2 = add(&b, 2, d, ds, MOE_INIT_NORMAL, ostd, 1, sp, l, blk, "down_proj");
        }
    }
    size_t fn = add(&b, 1, d, 0, MOE_INIT_ONES, 0, 1, "model.norm.weight");
    size_t head = add(&b, 2, c->vocab, d, MOE_INIT_NORMAL, std, 1, "lm_head.weight");
    if (b.st) { free(lo); moe_tparams_free(p); return b.st; }
    p->val = moe_calloc(p->total, sizeof(float));
    p->grad = moe_calloc(p->total, sizeof(float));
    p->m = moe_calloc(p->total, sizeof(float));
    p->v = moe_calloc(p->total, sizeof(float));
    p->P.layer = calloc((size_t)c->n_layers, sizeof(moe_tlayer));
    p->G.layer = calloc((size_t)c->n_layers, sizeof(moe_tlayer));
    if (!p->val || !p->grad || !p->m || !p->v || !p->P.layer || !p->G.layer) {
        free(lo);
        moe_tparams_free(p);
        return moe_fail(MOE_ENOMEM, "out of memory for %zu parameters", p->total);
    }
    resolve(&p->P, p->val, lo, c->n_layers, emb, fn, head);
    resolve(&p->G, p->grad, lo, c->n_layers, emb, fn, head);
    free(lo);
    *out = p;
    return MOE_OK;
}

void moe_tparams_free(moe_tparams *p) {
    if (!p) return;
    free(p->t);
    moe_free(p->val); moe_free(p->grad); moe_free(p->m); moe_free(p->v);
    free(p->P.layer); free(p->G.layer);
    free(p);
}

static double gauss(uint64_t *s) {
    /* Box-Muller on two 53-bit uniforms; deterministic for a seed */
    double u1 = ((moe_rng_next(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (moe_rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2);
}

void moe_tparams_init(moe_tparams *p, uint64_t seed) {
    for (int i = 0; i < p->n; i++) {
        const moe_tparam *t = &p->t[i];
        float *v = p->val + t->offset;
        /* each tensor gets its own stream, so adding a tensor does not reshuffle the others */
        uint64_t s = moe_hash64(seed ^ moe_hash64((uint64_t)i + 1));
        for (size_t j = 0; j < t->numel; j++)
            v[j] = t->init == MOE_INIT_ONES ? 1.0f : t->init == MOE_INIT_ZEROS ? 0.0f : (float)(gauss(&s) * t->std);
    }
}

const moe_tparam *moe_tparams_find(const moe_tparams *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name)) return &p->t[i];
    return NULL;
}
