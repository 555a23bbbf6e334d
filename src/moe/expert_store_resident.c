/* expert_store_resident.c - the trivial store: every expert is already in memory. */
#include "moe/expert_store.h"
#include <stdlib.h>

typedef struct resident {
    int n_layers, n_experts;
    moe_ffn_weights *w;   /* [n_layers * n_experts] */
} resident;

static moe_status acquire(void *self, int layer, int expert, moe_ffn_weights *out) {
    resident *r = self;
    *out = r->w[(size_t)layer * r->n_experts + expert];
    return MOE_OK;
}

static void destroy(void *self) {
    resident *r = self;
    free(r->w);
    free(r);
}

static const moe_store_ops k_resident_ops = {"resident", acquire, NULL, NULL, destroy, NULL, NULL};

moe_store *moe_store_resident_new(int n_layers, int n_experts) {
    moe_store *s = calloc(1, sizeof *s);
    resident *r = calloc(1, sizeof *r);
    if (!s || !r) { free(s); free(r); return NULL; }
    r->n_layers = n_layers;
    r->n_experts = n_experts;
    r->w = calloc((size_t)n_layers * (size_t)(n_experts > 0 ? n_experts : 1), sizeof *r->w);
    if (!r->w) { free(s); free(r); return NULL; }
    s->ops = &k_resident_ops;
    s->self = r;
    return s;
}

void moe_store_resident_set(moe_store *s, int layer, int expert, const moe_ffn_weights *w) {
    resident *r = s->self;
    r->w[(size_t)layer * r->n_experts + expert] = *w;
}

moe_ffn_weights *moe_store_resident_entry(moe_store *s, int layer, int expert) {
    if (!s || s->ops != &k_resident_ops) return NULL;
    resident *r = s->self;
    if (layer < 0 || layer >= r->n_layers || expert < 0 || expert >= r->n_experts) return NULL;
    return &r->w[(size_t)layer * r->n_experts + expert];
}

void moe_store_destroy(moe_store *s) {
    if (!s) return;
    if (s->ops->destroy) s->ops->destroy(s->self);
    free(s);
}
