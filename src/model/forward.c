/* forward.c - the forward pass over the new tokens of one or several sessions:
 *   x = embed(tokens); per layer: x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)); logits = head(rmsnorm(x)).
 *
 * Several sessions in one step (continuous batching): their new tokens are concatenated into one set
 * of rows, session after session. Everything that treats tokens independently - embedding, norms,
 * the attention projections, dense FFNs, token-choice MoE layers and the head - runs once over all
 * rows, so a weight matrix is read once per step instead of once per session; attention runs per
 * row against its own session's cache (moe_attention_forward_seqs). Routers whose decision depends
 * on the whole batch (the general form of moe/router.h: expert choice, capacity, BASE, Soft MoE)
 * run per session, so that a session's routing never depends on who shares its step.
 *
 * Results: every row is computed by the same operations as when its session runs alone, except that
 * the matrix kernels choose their blocking (and so the order of their sums) by the number of rows in
 * a product; a batched row therefore agrees with the same row run alone to float32 rounding, not
 * bit for bit. One session alone takes exactly the path it always took.
 *
 * Hooks: each session's routing and hidden-state hooks see only that session's rows, as if it ran
 * alone. Timing: each phase's time is shared between sessions in proportion to their rows. */
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "model/session.h"
#include "moe/ffn.h"
#include "moe/route_policy.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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

/* The head's bias and logits divisor (granite) on rows of logits. */
static void head_finish(const moe_model *m, float *logits, int rows) {
    const moe_config *c = &m->cfg;
    for (int r = 0; r < rows && (m->lm_head_b || c->logits_scale != 1.0); r++) {
        float *lr = logits + (size_t)r * c->vocab;
        if (m->lm_head_b) moe_add(lr, m->lm_head_b, (size_t)c->vocab);
        if (c->logits_scale != 1.0)
            for (int v = 0; v < c->vocab; v++) lr[v] /= (float)c->logits_scale;
    }
}

typedef struct step {
    const moe_step_seq *q;
    int ns, n, d;
    const moe_attn_seq *rows;   /* rows[i].row0 / .n: session i's rows */
} step;

/* Show each session its own rows of a hidden state. */
static void tap(const step *S, int layer, moe_hidden_point point, const float *x, const int *pos) {
    for (int i = 0; i < S->ns; i++) {
        const moe_session *s = S->q[i].s;
        if (!s->hidden) continue;
        int r0 = S->rows[i].row0;
        moe_hidden h = {layer, point, S->rows[i].n, S->d, pos + r0, x + (size_t)r0 * S->d};
        s->hidden(s->hidden_user, &h);
    }
}

/* The routing hook of a token-choice layer run over all rows: each session hears about its rows. */
static void route_demux(void *user, const moe_routing *r) {
    const step *S = user;
    for (int i = 0; i < S->ns; i++) {
        const moe_session *s = S->q[i].s;
        if (!s->hook) continue;
        size_t r0 = (size_t)S->rows[i].row0;
        moe_routing sub = {r->layer, S->rows[i].n, r->n_experts, r->top_k, r->pos + r0, r->expert + r0 * r->top_k,
                           r->weight + r0 * r->top_k, r->scores + r0 * r->n_experts};
        s->hook(s->hook_user, &sub);
    }
}

/* One MoE layer over the step's rows, with the model's routing policy (moe/route_policy.h) as the
 * decision's transform and the model's counters of executed experts. */
static moe_status layer_rows(const moe_layer *L, const float *h, int n, const int *pos, const int32_t *tokens, float *y,
                             moe_route_hook hook, void *user, moe_model *m, moe_arena *a) {
    moe_layer_io io = {pos, tokens, hook, user, m->policy ? moe_route_policy_apply : NULL, m->policy, m->route_counts};
    return moe_layer_run(L, h, n, &io, y, a);
}

static moe_status moe_rows(const step *S, const moe_layer *L, const float *h, const int *pos, const int32_t *tokens,
                           float *y, moe_arena *a) {
    moe_model *m = S->q[0].s->m;
    if (S->ns == 1) {
        const moe_session *s = S->q[0].s;
        return layer_rows(L, h, S->n, pos, tokens, y, s->hook, s->hook_user, m, a);
    }
    if (!L->router.ops->route && !moe_route_policy_batch_dependent(m->policy)) {
        int any_hook = 0;
        for (int i = 0; i < S->ns; i++) any_hook |= S->q[i].s->hook != NULL;
        return layer_rows(L, h, S->n, pos, tokens, y, any_hook ? route_demux : NULL, (void *)S, m, a);
    }
    /* a router of the general form, or a capacity, decides over its whole batch: one session at a time */
    for (int i = 0; i < S->ns; i++) {
        const moe_session *s = S->q[i].s;
        size_t r0 = (size_t)S->rows[i].row0;
        MOE_TRY(layer_rows(L, h + r0 * S->d, S->rows[i].n, pos + r0, tokens + r0, y + r0 * S->d, s->hook, s->hook_user, m,
                           a));
    }
    return MOE_OK;
}

/* Add dt seconds of a phase to every session's timer, shared by rows. */
static void charge(const step *S, double dt, int phase) {
    for (int i = 0; i < S->ns; i++) {
        moe_timing *T = &S->q[i].s->timing;
        double share = S->ns == 1 ? dt : dt * S->rows[i].n / S->n;
        switch (phase) {
        case 0: T->attention_s += share; break;
        case 1: T->moe_s += share; break;
        case 2: T->dense_ffn_s += share; break;
        default: T->head_s += share; break;
        }
    }
}

/* The head over the rows that want logits. One session writes straight into its buffer; several
 * are gathered into one product and copied out. */
static moe_status head(const step *S, const float *x, float *h, moe_arena *a) {
    const moe_session *s0 = S->q[0].s;
    const moe_model *m = s0->m;
    const moe_config *c = &m->cfg;
    int d = S->d, rows = 0;
    for (int i = 0; i < S->ns; i++)
        if (S->q[i].logits && S->q[i].first_row < S->q[i].n) rows += S->q[i].n - S->q[i].first_row;
    if (rows == 0) return MOE_OK;
    if (S->ns == 1) {
        const moe_step_seq *q = &S->q[0];
        norm(c, h, x + (size_t)q->first_row * d, m->final_norm, m->final_norm_b, rows);
        moe_matmul(q->logits, h, rows, m->lm_head.dtype, m->lm_head.data, c->vocab, d);
        head_finish(m, q->logits, rows);
        return MOE_OK;
    }
    float *out = moe_arena_alloc(a, (size_t)rows * c->vocab * sizeof(float));
    if (!out) return moe_fail(MOE_ENOMEM, "out of memory for %d rows of logits", rows);
    int r = 0;
    for (int i = 0; i < S->ns; i++) {
        const moe_step_seq *q = &S->q[i];
        if (!q->logits || q->first_row >= q->n) continue;
        int k = q->n - q->first_row;
        norm(c, h + (size_t)r * d, x + ((size_t)S->rows[i].row0 + q->first_row) * d, m->final_norm, m->final_norm_b, k);
        r += k;
    }
    moe_matmul(out, h, rows, m->lm_head.dtype, m->lm_head.data, c->vocab, d);
    head_finish(m, out, rows);
    r = 0;
    for (int i = 0; i < S->ns; i++) {
        const moe_step_seq *q = &S->q[i];
        if (!q->logits || q->first_row >= q->n) continue;
        int k = q->n - q->first_row;
        memcpy(q->logits, out + (size_t)r * c->vocab, (size_t)k * c->vocab * sizeof(float));
        r += k;
    }
    return MOE_OK;
}

moe_status moe_forward_step(const moe_step_seq *q, int ns) {
    moe_session *s0 = q[0].s;
    moe_model *m = s0->m;
    const moe_config *c = &m->cfg;
    int d = c->hidden, n = 0;
    for (int i = 0; i < ns; i++) n += q[i].n;
    /* scratch from the session that already holds the most: under continuous batching the first
     * session changes from step to step, and growing every session's arena to the size of a whole
     * batch would multiply the scratch memory by the number of sessions */
    moe_arena *a = &s0->scratch;
    for (int i = 1; i < ns; i++)
        if (moe_arena_capacity(&q[i].s->scratch) > moe_arena_capacity(a)) a = &q[i].s->scratch;
    moe_arena_reset(a);
    float *x = moe_arena_alloc(a, (size_t)n * d * 4), *h = moe_arena_alloc(a, (size_t)n * d * 4);
    float *y = moe_arena_alloc(a, (size_t)n * d * 4);
    int ff = 0; /* dense FFN scratch only if some layer is dense: MoE configs may carry a huge unused size */
    for (int l = 0; l < c->n_layers; l++)
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) ff = c->intermediate;
    float *hg = moe_arena_alloc(a, (size_t)n * ff * 4 + 4), *hu = moe_arena_alloc(a, (size_t)n * ff * 4 + 4);
    int *pos = moe_arena_alloc(a, sizeof(int) * (size_t)n);
    int32_t *tokens = ns == 1 ? (int32_t *)q[0].tokens : moe_arena_alloc(a, sizeof(int32_t) * (size_t)n);
    moe_attn_seq *rows = moe_arena_alloc(a, sizeof *rows * (size_t)ns);
    if (!x || !h || !y || !hg || !hu || !pos || !tokens || !rows)
        return moe_fail(MOE_ENOMEM, "out of memory for %d tokens", n);
    for (int i = 0, r0 = 0; i < ns; i++) {
        moe_session *s = q[i].s;
        rows[i] = (moe_attn_seq){r0, q[i].n, s->pos, NULL};
        for (int t = 0; t < q[i].n; t++) pos[r0 + t] = s->pos + t;
        if (ns > 1) memcpy(tokens + r0, q[i].tokens, sizeof(int32_t) * (size_t)q[i].n);
        r0 += q[i].n;
    }
    step S = {q, ns, n, d, rows};
    double t0 = now_s(), t1;
    embed_rows(&m->embed, tokens, n, x);
    if (c->embed_scale != 1.0)
        for (size_t i = 0; i < (size_t)n * d; i++) x[i] *= (float)c->embed_scale;
    for (int l = 0; l < c->n_layers; l++) {
        const moe_block *b = &m->blocks[l];
        for (int i = 0; i < ns; i++) rows[i].kv = &q[i].s->kv[l];
        norm(c, h, x, b->attn_norm, b->attn_norm_b, n);
        MOE_TRY(moe_attention_forward_seqs(m, l, h, n, rows, ns, y, a));
        residual_add(x, y, (size_t)n * d, c->residual_scale);
        norm(c, h, x, b->ffn_norm, b->ffn_norm_b, n);
        tap(&S, l, MOE_HIDDEN_FFN_INPUT, h, pos);
        t1 = now_s();
        charge(&S, t1 - t0, 0);
        t0 = t1;
        if (b->ffn_kind == MOE_FFN_MOE) MOE_TRY(moe_rows(&S, &b->moe, h, pos, tokens, y, a));
        else moe_swiglu_forward(&b->dense, h, n, y, hg, hu);
        residual_add(x, y, (size_t)n * d, c->residual_scale);
        tap(&S, l, MOE_HIDDEN_LAYER_OUTPUT, x, pos);
        t1 = now_s();
        charge(&S, t1 - t0, b->ffn_kind == MOE_FFN_MOE ? 1 : 2);
        t0 = t1;
        /* experts on disk: guess the next MoE layer's experts from the residual stream */
        if (b->ffn_kind == MOE_FFN_MOE) MOE_TRY(moe_layer_after(&b->moe, x, n, a));
    }
    MOE_TRY(head(&S, x, h, a));
    charge(&S, now_s() - t0, 3);
    for (int i = 0; i < ns; i++) q[i].s->timing.tokens += q[i].n;
    return MOE_OK;
}
