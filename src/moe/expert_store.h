/* expert_store.h - where routed experts' weights come from. The MoE layer asks the store for expert e
 * of layer l and receives three matrices of some dtype; it cannot tell whether they are resident,
 * mmapped, quantized or just read from disk under a memory budget. acquire may block on I/O;
 * prefetch is only a hint. Every acquire is paired with a release. */
#ifndef MOE_MOE_EXPERT_STORE_H
#define MOE_MOE_EXPERT_STORE_H
#include "core/tensor.h"
#include "moe.h"

/* A SwiGLU FFN: out = down( silu(gate x) * (up x) ); gate, up: [d_ff][d_model], down: [d_model][d_ff]. */
typedef struct moe_ffn_weights {
    moe_tensor gate, up, down;
} moe_ffn_weights;

typedef struct moe_store_ops {
    const char *name;
    moe_status (*acquire)(void *self, int layer, int expert, moe_ffn_weights *out);
    void (*release)(void *self, int layer, int expert);
    void (*prefetch)(void *self, int layer, const int *experts, int n);   /* may be NULL */
    void (*destroy)(void *self);
} moe_store_ops;

typedef struct moe_store {
    const moe_store_ops *ops;
    void *self;
} moe_store;

static inline moe_status moe_store_acquire(moe_store *s, int layer, int expert, moe_ffn_weights *out) {
    return s->ops->acquire(s->self, layer, expert, out);
}
static inline void moe_store_release(moe_store *s, int layer, int expert) {
    if (s->ops->release) s->ops->release(s->self, layer, expert);
}
static inline void moe_store_prefetch(moe_store *s, int layer, const int *experts, int n) {
    if (s->ops->prefetch) s->ops->prefetch(s->self, layer, experts, n);
}
void moe_store_destroy(moe_store *s);

/* The resident store: views into weights that are already in memory (mmapped safetensors). */
moe_store *moe_store_resident_new(int n_layers, int n_experts);
void moe_store_resident_set(moe_store *s, int layer, int expert, const moe_ffn_weights *w);
#endif
