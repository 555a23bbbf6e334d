/* ep_model.c - one rank of an expert-parallel job (see ep_model.h, moe/ep.h). Everything but the
 * routed experts stays replicated; the experts of other ranks are released page by page. A stored
 * expert may serve several router slots (merged checkpoints: moe_expert_slots), so a non-owned
 * slot's bytes are released only where no owned slot of the same layer uses them. */
#include "model/ep_model.h"
#include "core/error.h"
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct { uintptr_t lo, hi; } span;

static void spans_of(const moe_ffn_weights *w, span s[3]) {
    const moe_tensor *t[3] = {&w->gate, &w->up, &w->down};
    for (int i = 0; i < 3; i++) {
        s[i].lo = (uintptr_t)t[i]->data;
        s[i].hi = s[i].lo + (t[i]->data ? (uintptr_t)t[i]->nbytes : 0);
    }
}

/* Release the whole pages inside [lo, hi) that no owned expert of the layer touches. */
static void release(uintptr_t lo, uintptr_t hi, const span *keep, int n_keep, uintptr_t page) {
    lo = (lo + page - 1) & ~(page - 1);
    hi &= ~(page - 1);
    for (int i = 0; i < n_keep && lo < hi; i++) {
        if (keep[i].hi <= lo || keep[i].lo >= hi) continue;
        /* an owned range overlaps: release the pages on either side of it */
        release(lo, keep[i].lo, keep, n_keep, page);
        release(keep[i].hi, hi, keep, n_keep, page);
        return;
    }
    if (lo < hi) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

moe_status moe_model_ep_attach(moe_model *m, moe_ep *ep) {
    const moe_config *c = &m->cfg;
    int E = c->n_experts;
    if (ep->size < 1 || ep->rank < 0 || ep->rank >= ep->size)
        return moe_fail(MOE_EINTERNAL, "expert parallelism: rank %d of %d", ep->rank, ep->size);
    if (ep->n_layers != c->n_layers || ep->n_experts != E)
        return moe_fail(MOE_EUSAGE, "expert parallelism: a placement for %d layers x %d experts, the model has %d x %d",
                        ep->n_layers, ep->n_experts, c->n_layers, E);
    int any = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) continue;
        any = 1;
        const moe_router *r = &m->blocks[l].moe.router;
        if (r->ops->kind == MOE_ROUTE_SOFT)
            return moe_fail(MOE_EUSAGE, "expert parallelism: layer %d's router %s mixes every token into every expert "
                            "(Soft MoE), which has no expert-parallel form", l, r->ops->name);
        for (int e = 0; e < E; e++) {
            int o = ep->owner[(size_t)l * E + e];
            if (o < 0 || o >= ep->size)
                return moe_fail(MOE_EUSAGE, "expert parallelism: expert %d of layer %d placed on rank %d of %d", e, l, o, ep->size);
        }
    }
    if (!any) return moe_fail(MOE_EUSAGE, "expert parallelism: %s is a dense model (no routed experts to place)", m->weights->dir);
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    span *keep = malloc(sizeof(span) * 3 * (size_t)(E > 0 ? E : 1));
    if (!keep) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) continue;
        m->blocks[l].moe.ep = ep;
        if (!moe_store_resident_entry(m->store, l, 0)) continue;   /* an on-disk store reads only what runs */
        int n_keep = 0;
        for (int e = 0; e < E; e++)
            if (ep->owner[(size_t)l * E + e] == ep->rank) {
                spans_of(moe_store_resident_entry(m->store, l, e), keep + n_keep);
                n_keep += 3;
            }
        for (int e = 0; e < E; e++) {
            if (ep->owner[(size_t)l * E + e] == ep->rank) continue;
            span s[3];
            spans_of(moe_store_resident_entry(m->store, l, e), s);
            for (int i = 0; i < 3; i++)
                if (s[i].hi > s[i].lo) release(s[i].lo, s[i].hi, keep, n_keep, page);
        }
    }
    free(keep);
    return MOE_OK;
}
