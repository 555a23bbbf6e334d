/* expert_store.h - where routed experts' weights come from. The MoE layer asks the store for expert e
 * of layer l and receives three matrices of some dtype; it cannot tell whether they are resident,
 * mmapped, quantized or just read from disk under a memory budget. acquire may block on I/O;
 * prefetch is only a hint. Every acquire is paired with a release. */
#ifndef MOE_MOE_EXPERT_STORE_H
#define MOE_MOE_EXPERT_STORE_H
#include "core/tensor.h"
#include "moe.h"

/* The activation of a gated FFN, act(g, u) elementwise on the gate and up projections. A zeroed value
 * is SwiGLU. Adding a kind: one enum value and one case in moe_ffn_act_apply (src/moe/ffn.c). */
typedef enum moe_act_kind {
    MOE_ACT_SILU = 0,       /* silu(g) * u: SwiGLU (Llama, Mixtral, Qwen, DeepSeek, OLMoE) */
    MOE_ACT_SWIGLU_CLAMP,   /* gpt-oss: g' = min(g, limit), u' = clamp(u, -limit, limit), g' sigmoid(alpha g') (u' + 1) */
    MOE_ACT_COUNT
} moe_act_kind;

typedef struct moe_ffn_act {
    int kind;               /* moe_act_kind */
    float alpha, limit;     /* MOE_ACT_SWIGLU_CLAMP */
} moe_ffn_act;

/* A gated FFN: out = down( act(gate x + gate_bias, up x + up_bias) ) + down_bias; gate, up:
 * [d_ff][gate_in or d_model], down: [d_model][d_ff]. Biases are f32 vectors in memory, NULL when the
 * model has none; the store hands them out with the matrices. */
typedef struct moe_ffn_weights {
    moe_tensor gate, up, down;
    const float *gate_bias, *up_bias, *down_bias;   /* [d_ff], [d_ff], [d_model] or NULL */
    moe_ffn_act act;
} moe_ffn_weights;

typedef struct moe_store_ops {
    const char *name;
    moe_status (*acquire)(void *self, int layer, int expert, moe_ffn_weights *out);
    void (*release)(void *self, int layer, int expert);
    void (*prefetch)(void *self, int layer, const int *experts, int n);   /* may be NULL */
    void (*destroy)(void *self);
    /* The layer's routing outcome for a batch of n_tok tokens, before any acquire: the n distinct
     * experts it will use and how many tokens each serves; pos0 is the first token's position (0
     * starts a sequence). Lets a store count activations and score its predictions. May be NULL. */
    void (*route)(void *self, int layer, int pos0, int n_tok, const int *experts, const int *counts, int n);
    /* A guess of the experts `layer` will use (speculative reads); only called when the store sets
     * predict_next. May be NULL. */
    void (*predict)(void *self, int layer, const int *experts, int n);
} moe_store_ops;

typedef struct moe_store {
    const moe_store_ops *ops;
    void *self;
    int predict_next;   /* the layer should guess the next MoE layer's experts (cross-layer gate) */
    int max_pinned;     /* most experts acquired at once (0: no limit); the layer runs experts in waves */
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
static inline void moe_store_route(moe_store *s, int layer, int pos0, int n_tok, const int *experts,
                                   const int *counts, int n) {
    if (s->ops->route) s->ops->route(s->self, layer, pos0, n_tok, experts, counts, n);
}
static inline void moe_store_predict(moe_store *s, int layer, const int *experts, int n) {
    if (s->ops->predict) s->ops->predict(s->self, layer, experts, n);
}
void moe_store_destroy(moe_store *s);

/* The resident store: views into weights that are already in memory (mmapped safetensors). */
moe_store *moe_store_resident_new(int n_layers, int n_experts);
void moe_store_resident_set(moe_store *s, int layer, int expert, const moe_ffn_weights *w);
/* The resident store's entry for (layer, expert), to rewrite its views (NULL for another store). */
moe_ffn_weights *moe_store_resident_entry(moe_store *s, int layer, int expert);
#endif
