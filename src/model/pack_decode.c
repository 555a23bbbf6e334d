/* pack_decode.c - with the weights read into memory (--no-mmap), rewrite the bf16 matrices that only
 * ever go through moe_matmul into 4-row panels (core/packed.h), which decode reads at close to the
 * memory bandwidth. Packed: attention projections (grouped-query only: MLA code slices its matrices;
 * linear attention's input and output projections), dense and shared FFNs, routed experts (all
 * routers run them through the same kernels), and an untied LM head.
 * Never: the embedding table (its rows are read directly), routers and gates (their rows are read by
 * the predictor fit and AoE), anything mapped from the page cache, nor any matrix whose bytes another
 * view or one of those tensors shares in a different shape. */
#include "core/alloc.h"
#include "core/error.h"
#include "core/packed.h"
#include "model/model.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A view of a matrix that could be packed, or a blocker: a tensor whose rows are read directly (the
 * embedding table, routers, gates). A matrix is packed only if no other view overlaps its bytes,
 * except views of exactly the same bytes and shape (tied or shared weights), and no blocker does. */
typedef struct {
    moe_tensor *t;    /* NULL for a blocker */
    const char *lo, *hi;
    int64_t rows, cols;
    int ok;
} view;

typedef struct {
    view *v;
    int n, cap;
} views;

static moe_status add(views *vs, moe_tensor *t, const moe_tensor *blocker) {
    const moe_tensor *x = t ? t : blocker;
    if (!x || !x->data || !x->nbytes) return MOE_OK;
    if (t && (t->dtype != MOE_BF16 || t->ndim != 2 || !moe_bf16p_eligible(t->shape[0], t->shape[1]))) return MOE_OK;
    if (vs->n == vs->cap) {
        int cap = vs->cap ? 2 * vs->cap : 256;
        view *v = realloc(vs->v, sizeof *v * (size_t)cap);
        if (!v) return moe_fail(MOE_ENOMEM, "out of memory");
        vs->v = v;
        vs->cap = cap;
    }
    vs->v[vs->n++] = (view){t, x->data, (const char *)x->data + x->nbytes, x->shape[0], x->ndim > 1 ? x->shape[1] : 1, t != NULL};
    return MOE_OK;
}

static int by_lo(const void *a, const void *b) {
    const view *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

static int same(const view *a, const view *b) {
    return a->t && b->t && a->lo == b->lo && a->hi == b->hi && a->rows == b->rows && a->cols == b->cols;
}

static moe_status add_ffn(views *vs, moe_ffn_weights *w) {
    MOE_TRY(add(vs, &w->gate, NULL));
    MOE_TRY(add(vs, &w->up, NULL));
    return add(vs, &w->down, NULL);
}

static void protect(moe_weights *w, int prot) {
    for (int i = 0; i < w->n_files; i++)
        if (w->files[i]->map) mprotect(w->files[i]->map, w->files[i]->size, prot);
}

moe_status moe_model_pack_decode(moe_model *m) {
    const moe_config *c = &m->cfg;
    views vs = {0};
    moe_status st = add(&vs, NULL, &m->embed);
    if (st == MOE_OK) st = add(&vs, &m->lm_head, NULL);
    for (int l = 0; st == MOE_OK && l < c->n_layers; l++) {
        moe_block *b = &m->blocks[l];
        if (!c->mla) {
            moe_tensor *a[4] = {&b->attn.wq, &b->attn.wk, &b->attn.wv, &b->attn.wo};
            for (int i = 0; st == MOE_OK && i < 4; i++) st = add(&vs, a[i], NULL);
        }
        if (b->mixer == MOE_MIXER_DELTANET) {
            moe_tensor *a[3] = {&b->lin.in_qkvz, &b->lin.in_ba, &b->lin.out};
            for (int i = 0; st == MOE_OK && i < 3; i++) st = add(&vs, a[i], NULL);
        }
        if (st == MOE_OK && b->ffn_kind != MOE_FFN_MOE) st = add_ffn(&vs, &b->dense);
        if (st != MOE_OK || b->ffn_kind != MOE_FFN_MOE) continue;
        st = add(&vs, NULL, &b->moe.router.gate);
        if (st == MOE_OK && b->moe.has_shared_gate) st = add(&vs, NULL, &b->moe.shared_gate);
        if (st == MOE_OK && b->moe.has_shared) st = add_ffn(&vs, &b->moe.shared);
        for (int e = 0; st == MOE_OK && e < c->n_experts; e++) {   /* every router's experts go through the executor's kernels */
            moe_ffn_weights *w = moe_store_resident_entry(m->store, l, e);
            if (w) st = add_ffn(&vs, w);
        }
    }
    if (st != MOE_OK) { free(vs.v); return st; }
    /* overlaps: sorted by start, a view is packable only if every view it overlaps is the same bytes
     * and shape (then they are packed once and all retagged) */
    qsort(vs.v, (size_t)vs.n, sizeof *vs.v, by_lo);
    for (int i = 0; i < vs.n; i++)
        for (int j = i + 1; j < vs.n && vs.v[j].lo < vs.v[i].hi; j++)
            if (!same(&vs.v[i], &vs.v[j])) vs.v[i].ok = vs.v[j].ok = 0;
    for (int i = 0; i < vs.n; i++)   /* a duplicate of an unpackable view is unpackable too */
        for (int j = i + 1; j < vs.n && same(&vs.v[i], &vs.v[j]); j++)
            if (!vs.v[i].ok || !vs.v[j].ok) vs.v[i].ok = vs.v[j].ok = 0;
    uint16_t *tmp = NULL;
    size_t tmp_elems = 0;
    protect(m->weights, PROT_READ | PROT_WRITE);
    for (int i = 0; st == MOE_OK && i < vs.n; i++) {
        view *v = &vs.v[i];
        if (!v->ok) continue;
        if (i == 0 || !same(v, &vs.v[i - 1])) {   /* first view of these bytes: pack them */
            size_t elems = (size_t)v->rows * (size_t)v->cols;
            if (elems > tmp_elems) {
                moe_free(tmp);
                tmp_elems = 0;
                if (!(tmp = moe_alloc(elems * sizeof(uint16_t)))) { st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
                tmp_elems = elems;
            }
            moe_bf16p_pack(v->t->data, (int)v->rows, (int)v->cols, tmp);
            memcpy((void *)v->t->data, tmp, elems * sizeof(uint16_t));
        }
        v->t->dtype = MOE_BF16P;
    }
    protect(m->weights, PROT_READ);
    moe_free(tmp);
    free(vs.v);
    return st;
}
