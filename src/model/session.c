/* session.c - a KV cache over a model (for linear-attention layers, their recurrent state instead), and
 * appending tokens to it: one session at a time (moe_session_eval) or several sessions in one forward
 * pass (moe_session_eval_batch; the pass itself is in forward.c). Long inputs are processed in chunks so
 * scratch memory stays bounded; chunking does not change the result because every chunk attends to the
 * cache of the ones before it (or continues the recurrent state). A batch is cut into the same chunks
 * per session as that session alone would be. Evaluation is all or nothing: on failure no session's
 * position moves (a session of a model with linear-attention layers, whose recurrent state did move,
 * refuses to continue until it is reset). */
#include "core/alloc.h"
#include "core/error.h"
#include "model/deltanet.h"
#include "model/session.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 256

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
        if (c->mixer[l] == MOE_MIXER_DELTANET) {   /* a recurrent state instead of keys and values */
            s->kv[l].conv = moe_alloc(moe_deltanet_conv_floats(c) * sizeof(float));
            s->kv[l].rec = moe_alloc(moe_deltanet_state_floats(c) * sizeof(float));
            if (s->kv[l].conv && s->kv[l].rec) continue;
            moe_session_free(s);
            return moe_fail(MOE_ENOMEM, "out of memory for the recurrent state of layer %d", l);
        }
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
        for (int l = 0; l < s->m->cfg.n_layers; l++) {
            moe_free(s->kv[l].k); moe_free(s->kv[l].v);
            moe_free(s->kv[l].conv); moe_free(s->kv[l].rec);
        }
    free(s->kv);
    moe_arena_free(&s->scratch);
    free(s);
}

void moe_session_reset(moe_session *s) {
    s->pos = 0;
    s->state_lost = 0;
}
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

/* Check one sequence of a batch (index i, or -1 for a lone session) before anything runs. */
static moe_status check_seq(const moe_batch_seq *b, int i, const moe_model *m) {
    char who[48] = "";
    if (i >= 0) snprintf(who, sizeof who, "batch sequence %d: ", i);
    if (!b->session) return moe_fail(MOE_EUSAGE, "%sno session", who);
    if (b->session->m != m) return moe_fail(MOE_EUSAGE, "%sthe sessions of one batch must share one model", who);
    if (b->n_tokens <= 0 || !b->tokens) return moe_fail(MOE_EUSAGE, "%sno tokens to evaluate", who);
    const moe_config *c = &m->cfg;
    for (int t = 0; t < b->n_tokens; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab)
            return moe_fail(MOE_EINPUT, "%s%s: token id %d at index %d is outside the vocabulary [0, %d)", who, m->weights->dir,
                            b->tokens[t], t, c->vocab);
    const moe_session *s = b->session;
    if (s->state_lost && s->pos > 0)
        return moe_fail(MOE_EUSAGE, "%sthe recurrent state of this session was lost in a failed evaluation: reset the session", who);
    if (b->n_tokens > s->max_ctx - s->pos)
        return moe_fail(MOE_EINPUT, "%s%d tokens after %d already cached exceed the context of %d", who, b->n_tokens, s->pos,
                        s->max_ctx);
    return MOE_OK;
}

/* Run a checked batch in rounds: round r evaluates chunk r of every sequence that still has tokens. */
static moe_status eval_seqs(const moe_batch_seq *b, int nb, moe_step_seq *steps, int *start_pos) {
    int vocab = b[0].session->m->cfg.vocab;
    moe_status st = MOE_OK;
    for (int i = 0; i < nb; i++) start_pos[i] = b[i].session->pos;
    for (int c0 = 0; st == MOE_OK; c0 += CHUNK) {
        int ns = 0;
        for (int i = 0; i < nb; i++) {
            int n = b[i].n_tokens;
            if (c0 >= n) continue;
            int cn = n - c0 < CHUNK ? n - c0 : CHUNK;
            moe_step_seq *q = &steps[ns++];
            *q = (moe_step_seq){b[i].session, b[i].tokens + c0, cn, NULL, cn};
            if (b[i].logits && b[i].all_positions) { q->logits = b[i].logits + (size_t)c0 * vocab; q->first_row = 0; }
            else if (b[i].logits && c0 + cn == n) { q->logits = b[i].logits; q->first_row = cn - 1; }
        }
        if (ns == 0) break;
        st = moe_forward_step(steps, ns);
        if (st == MOE_OK)
            for (int i = 0; i < ns; i++) steps[i].s->pos += steps[i].n;
    }
    /* keys and values past pos are simply overwritten later, but a linear-attention layer's state has
     * no position to go back to: such a session must start again */
    int recurrent = 0;
    for (int l = 0; l < b[0].session->m->cfg.n_layers; l++) recurrent |= b[0].session->m->cfg.mixer[l] == MOE_MIXER_DELTANET;
    for (int i = 0; i < nb; i++) {
        if (st != MOE_OK) b[i].session->pos = start_pos[i];
        b[i].session->state_lost = st != MOE_OK && recurrent;
    }
    return st;
}

moe_status moe_session_eval(moe_session *s, const int32_t *tokens, int n, float *logits, int all_positions) {
    moe_batch_seq b = {s, tokens, n, logits, all_positions};
    if (n <= 0) return moe_fail(MOE_EUSAGE, "no tokens to evaluate");
    MOE_TRY(check_seq(&b, -1, s->m));
    moe_step_seq step;
    int start;
    return eval_seqs(&b, 1, &step, &start);
}

moe_status moe_session_eval_batch(const moe_batch_seq *seqs, int n_seqs) {
    if (n_seqs <= 0 || !seqs) return moe_fail(MOE_EUSAGE, "an empty batch");
    if (!seqs[0].session) return moe_fail(MOE_EUSAGE, "batch sequence 0: no session");
    const moe_model *m = seqs[0].session->m;
    for (int i = 0; i < n_seqs; i++) {
        MOE_TRY(check_seq(&seqs[i], i, m));
        for (int j = 0; j < i; j++)
            if (seqs[j].session == seqs[i].session)
                return moe_fail(MOE_EUSAGE, "batch sequences %d and %d are the same session", j, i);
    }
    moe_step_seq *steps = malloc(sizeof *steps * (size_t)n_seqs);
    int *start = malloc(sizeof *start * (size_t)n_seqs);
    moe_status st = steps && start ? eval_seqs(seqs, n_seqs, steps, start) : moe_fail(MOE_ENOMEM, "out of memory");
    free(steps);
    free(start);
    return st;
}
