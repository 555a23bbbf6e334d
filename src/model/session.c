/* session.c - a KV cache over a model and the forward pass that fills it:
 *   x = embed(tokens); per layer: x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)); logits = head(rmsnorm(x)).
 * Long inputs are processed in chunks so scratch memory stays bounded; chunking does not change the
 * result because every chunk attends to the cache of the ones before it. */
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "model/attention.h"
#include "moe/ffn.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK 256

struct moe_session {
    moe_model *m;
    int max_ctx, pos;
    moe_kv_layer *kv;
    moe_route_hook hook;
    void *hook_user;
    moe_hidden_hook hidden;
    void *hidden_user;
    moe_arena scratch;
    moe_timing timing;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void moe_session_get_timing(const moe_session *s, moe_timing *out) { *out = s->timing; }
void moe_session_reset_timing(moe_session *s) { memset(&s->timing, 0, sizeof s->timing); }

moe_status moe_session_new(moe_model *m, int max_ctx, moe_session **out) {
    *out = NULL;
    const moe_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = c->max_pos < 4096 ? c->max_pos : 4096;
    int n_kv, kd, vd;
    moe_attention_dims(c, &n_kv, &kd, &vd);
    moe_session *s = calloc(1, sizeof *s);
    if (!s) return moe_fail(MOE_ENOMEM, "out of memory");
    s->m = m;
    s->max_ctx = max_ctx;
    s->kv = calloc((size_t)c->n_layers, sizeof *s->kv);
    if (!s->kv) { free(s); return moe_fail(MOE_ENOMEM, "out of memory"); }
    for (int l = 0; l < c->n_layers; l++) {
        s->kv[l].k = moe_alloc((size_t)max_ctx * n_kv * kd * sizeof(float));
        s->kv[l].v = moe_alloc((size_t)max_ctx * n_kv * vd * sizeof(float));
        if (!s->kv[l].k || !s->kv[l].v) {
            moe_session_free(s);
            return moe_fail(MOE_ENOMEM, "out of memory for a KV cache of %d positions", max_ctx);
        }
    }
    *out = s;
    return MOE_OK;
}

void moe_session_free(moe_session *s) {
    if (!s) return;
    if (s->kv)
        for (int l = 0; l < s->m->cfg.n_layers; l++) { moe_free(s->kv[l].k); moe_free(s->kv[l].v); }
    free(s->kv);
    moe_arena_free(&s->scratch);
    free(s);
}

void moe_session_reset(moe_session *s) { s->pos = 0; }
int moe_session_pos(const moe_session *s) { return s->pos; }
int moe_session_max_ctx(const moe_session *s) { return s->max_ctx; }
void moe_session_set_route_hook(moe_session *s, moe_route_hook hook, void *user) {
    s->hook = hook;
    s->hook_user = user;
}

void moe_session_set_hidden_hook(moe_session *s, moe_hidden_hook hook, void *user) {
    s->hidden = hook;
    s->hidden_user = user;
}

static void tap(const moe_session *s, int layer, moe_hidden_point point, const float *x, int n, const int *pos) {
    if (!s->hidden) return;
    moe_hidden h = {layer, point, n, s->m->cfg.hidden, pos, x};
    s->hidden(s->hidden_user, &h);
}

static void embed_rows(const moe_tensor *e, const int32_t *tokens, int n, float *x) {
    int d = (int)e->shape[1];
    size_t rb = moe_dtype_row_bytes(e->dtype, d);
    for (int t = 0; t < n; t++)
        moe_rows_to_f32(e->dtype, (const char *)e->data + (size_t)tokens[t] * rb, 1, d, x + (size_t)t * d);
}

/* The normalisation before attention, before the FFN and before the head: RMSNorm, or LayerNorm with
 * a bias (phimoe). */
static void norm(const moe_config *c, float *y, const float *x, const float *w, const float *b, int n) {
    if (c->norm == MOE_NORM_LAYER) moe_layernorm(y, x, w, b, n, c->hidden, c->rms_eps);
    else moe_rmsnorm(y, x, w, n, c->hidden, c->rms_eps);
}

/* x += y, or x += y * scale (granite's residual_multiplier), rounded as torch does it. */
static void residual_add(float *x, const float *y, size_t n, double scale) {
    if (scale == 1.0) { moe_add(x, y, n); return; }
    float s = (float)scale;
    for (size_t i = 0; i < n; i++) x[i] += y[i] * s;
}

/* One chunk of n tokens at positions s->pos.. ; writes logits rows [first_row, n) if logits != NULL. */
static moe_status forward_chunk(moe_session *s, const int32_t *tokens, int n, float *logits, int first_row) {
    moe_model *m = s->m;
    const moe_config *c = &m->cfg;
    int d = c->hidden;
    moe_status st = MOE_OK;
    moe_arena *a = &s->scratch;
    moe_arena_reset(a);
    float *x = moe_arena_alloc(a, (size_t)n * d * 4), *h = moe_arena_alloc(a, (size_t)n * d * 4);
    float *y = moe_arena_alloc(a, (size_t)n * d * 4);
    int ff = 0; /* dense FFN scratch only if some layer is dense: MoE configs may carry a huge unused size */
    for (int l = 0; l < c->n_layers; l++)
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) ff = c->intermediate;
    float *hg = moe_arena_alloc(a, (size_t)n * ff * 4 + 4), *hu = moe_arena_alloc(a, (size_t)n * ff * 4 + 4);
    int *pos = moe_arena_alloc(a, sizeof(int) * (size_t)n);
    if (!x || !h || !y || !hg || !hu || !pos) { st = moe_fail(MOE_ENOMEM, "out of memory for %d tokens", n); goto done; }
    for (int t = 0; t < n; t++) pos[t] = s->pos + t;
    moe_timing *T = &s->timing;
    double t0 = now_s(), t1;
    embed_rows(&m->embed, tokens, n, x);
    if (c->embed_scale != 1.0)
        for (size_t i = 0; i < (size_t)n * d; i++) x[i] *= (float)c->embed_scale;
    for (int l = 0; l < c->n_layers; l++) {
        const moe_block *b = &m->blocks[l];
        norm(c, h, x, b->attn_norm, b->attn_norm_b, n);
        if ((st = moe_attention_forward(m, l, h, n, s->pos, &s->kv[l], y, a)) != MOE_OK) goto done;
        residual_add(x, y, (size_t)n * d, c->residual_scale);
        norm(c, h, x, b->ffn_norm, b->ffn_norm_b, n);
        tap(s, l, MOE_HIDDEN_FFN_INPUT, h, n, pos);
        t1 = now_s();
        T->attention_s += t1 - t0;
        t0 = t1;
        if (b->ffn_kind == MOE_FFN_MOE) {
            if ((st = moe_layer_forward_tokens(&b->moe, h, n, pos, tokens, y, s->hook, s->hook_user, a)) != MOE_OK) goto done;
        } else {
            moe_swiglu_forward(&b->dense, h, n, y, hg, hu);
        }
        residual_add(x, y, (size_t)n * d, c->residual_scale);
        tap(s, l, MOE_HIDDEN_LAYER_OUTPUT, x, n, pos);
        t1 = now_s();
        *(b->ffn_kind == MOE_FFN_MOE ? &T->moe_s : &T->dense_ffn_s) += t1 - t0;
        t0 = t1;
        /* experts on disk: guess the next MoE layer's experts from the residual stream */
        if (b->ffn_kind == MOE_FFN_MOE && (st = moe_layer_after(&b->moe, x, n, a)) != MOE_OK) goto done;
    }
    if (logits && first_row < n) {
        int rows = n - first_row;
        norm(c, h, x + (size_t)first_row * d, m->final_norm, m->final_norm_b, rows);
        moe_matmul(logits, h, rows, m->lm_head.dtype, m->lm_head.data, c->vocab, d);
        for (int r = 0; r < rows && (m->lm_head_b || c->logits_scale != 1.0); r++) {
            float *lr = logits + (size_t)r * c->vocab;
            if (m->lm_head_b) moe_add(lr, m->lm_head_b, (size_t)c->vocab);
            if (c->logits_scale != 1.0)
                for (int v = 0; v < c->vocab; v++) lr[v] /= (float)c->logits_scale;
        }
        T->head_s += now_s() - t0;
    }
    T->tokens += n;
done:
    return st;
}

moe_status moe_session_eval(moe_session *s, const int32_t *tokens, int n, float *logits, int all_positions) {
    const moe_config *c = &s->m->cfg;
    if (n <= 0) return moe_fail(MOE_EUSAGE, "no tokens to evaluate");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return moe_fail(MOE_EINPUT, "%s: token id %d at index %d is outside the vocabulary [0, %d)", s->m->weights->dir,
                            tokens[i], i, c->vocab);
    if (n > s->max_ctx - s->pos)
        return moe_fail(MOE_EINPUT, "%d tokens after %d already cached exceed the context of %d", n, s->pos, s->max_ctx);
    for (int c0 = 0; c0 < n; c0 += CHUNK) {
        int cn = n - c0 < CHUNK ? n - c0 : CHUNK;
        float *out = NULL;
        int first = cn;
        if (logits && all_positions) { out = logits + (size_t)c0 * c->vocab; first = 0; }
        else if (logits && c0 + cn == n) { out = logits; first = cn - 1; }
        moe_status st = forward_chunk(s, tokens + c0, cn, out, first);
        if (st != MOE_OK) return st;
        s->pos += cn;
    }
    return MOE_OK;
}
