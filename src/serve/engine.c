/* engine.c - the continuous-batching loop of `moe serve` (see engine.h).
 *
 * One mutex guards the queue, the slots' request pointers and every request's output; the forward
 * pass, sampling and detokenizing run outside it, on state only the engine thread touches, so HTTP
 * threads can take text or cancel at any time. A step:
 *   1. retire slots whose client left or whose time is up; fail queued requests that waited too
 *      long; move queued requests into free slots (first come, first served);
 *   2. plan: every decoding slot feeds its last sampled token; slots still reading their prompt share
 *      `prefill_chunk` prompt tokens, oldest request first (a long prompt takes several steps, so it
 *      never stalls the others' decoding for long);
 *   3. one moe_session_eval_batch over the plan;
 *   4. each slot that got logits samples its next token, detokenizes it, applies stop strings, and
 *      its new text and end (EOS, stop string, max_tokens, context, time limit) are published.
 * A request that finishes or is cancelled frees its slot for the next step. */
#include "serve/engine.h"
#include "core/error.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

const double srv_hist_bounds[SRV_HIST_N] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120};

struct srv_req {
    int refs;                       /* atomic */
    int32_t *prompt;
    int n_prompt;
    srv_gen g;
    char *stop_copy[SRV_MAX_STOPS];
    int efd;
    double t_submit, deadline;
    srv_req *next;                  /* queue link */
    /* under the engine's mutex */
    char *text;
    size_t text_len, text_cap, taken;
    int admitted, done, cancelled, http_status, completion_tokens, got_first;
    srv_tok *toks;                  /* logprobs records */
    int n_toks, cap_toks, toks_taken;
    const char *finish;
    char error[256];
};

typedef struct slot {
    srv_req *r;                     /* NULL: free */
    moe_session *s;
    float *logits;
    moe_sampler sampler;
    moe_detokenizer *dt;
    moe_stop_filter stop;
    int fed, produced, take, prefill;
    int32_t next_tok;
    uint64_t order;                 /* admission order: prefill goes to the oldest first */
    /* the outcome of a step, published under the mutex */
    char *emit;
    size_t emit_len, emit_cap;
    const char *end;                /* "stop" / "length" / NULL */
    int first;                      /* produced its first token this step */
    int has_tok;                    /* tok holds this step's token record (logprobs) */
    srv_tok tok;
} slot;

struct srv_engine {
    srv_engine_cfg cfg;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    slot *slots;
    int vocab;
    srv_req *q_head, *q_tail;
    uint64_t admitted;
    srv_counters c;
    srv_hist ttft, total;
    moe_batch_seq *batch;
    int *batch_slot;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void hist_add(srv_hist *h, double v) {
    for (int i = 0; i < SRV_HIST_N; i++)
        if (v <= srv_hist_bounds[i]) h->count[i]++;
    h->count[SRV_HIST_N]++;
    h->sum += v;
}

static void notify(srv_req *r) {
    uint64_t one = 1;
    if (write(r->efd, &one, sizeof one) < 0 && errno != EAGAIN) { /* a full counter already wakes the reader */ }
}

/* ---- requests ------------------------------------------------------------------------------- */

srv_req *srv_req_new(const int32_t *prompt, int n, const srv_gen *g) {
    srv_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->refs = 1;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->prompt = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    r->g = *g;
    int ok = r->efd >= 0 && r->prompt;
    for (int i = 0; i < g->n_stops && ok; i++) ok = (r->g.stops[i] = r->stop_copy[i] = strdup(g->stops[i])) != NULL;
    if (!ok) { srv_req_unref(r); return NULL; }
    if (n > 0) memcpy(r->prompt, prompt, sizeof(int32_t) * (size_t)n);
    r->n_prompt = n;
    return r;
}

void srv_req_unref(srv_req *r) {
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    if (r->efd >= 0) close(r->efd);
    for (int i = 0; i < SRV_MAX_STOPS; i++) free(r->stop_copy[i]);
    free(r->prompt);
    free(r->text);
    free(r->toks);
    free(r);
}

int srv_req_fd(const srv_req *r) { return r->efd; }

/* Under the mutex: the request ends (finish reason, or an HTTP status and message). Drops the
 * engine's reference. */
static void end_request(srv_engine *e, srv_req *r, const char *finish, int status, const char *msg) {
    r->done = 1;
    r->finish = finish;
    r->http_status = status;
    if (msg) snprintf(r->error, sizeof r->error, "%s", msg);
    if (finish && !strcmp(finish, "stop")) e->c.finished_stop++;
    else if (finish) e->c.finished_length++;
    if (!status && !r->cancelled) hist_add(&e->total, now_s() - r->t_submit);
    notify(r);
    srv_req_unref(r);
}

static moe_status append(char **buf, size_t *len, size_t *cap, const char *text, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *p = realloc(*buf, c);
        if (!p) return moe_fail(MOE_ENOMEM, "out of memory");
        *buf = p;
        *cap = c;
    }
    if (n) memcpy(*buf + *len, text, n);
    *len += n;
    (*buf)[*len] = 0;
    return MOE_OK;
}

/* ---- slots ----------------------------------------------------------------------------------- */

static void free_slot(srv_engine *e, slot *sl) {
    (void)e;
    sl->r = NULL;
    moe_session_reset(sl->s);
    moe_sampler_free(&sl->sampler);
    moe_detokenizer_free(sl->dt);
    sl->dt = NULL;
    moe_stop_free(&sl->stop);
}

/* Under the mutex: give a free slot to a queued request. */
static int admit(srv_engine *e, slot *sl, srv_req *r) {
    memset(&sl->stop, 0, sizeof sl->stop);
    if (moe_sampler_init(&sl->sampler, &r->g.sampling, e->vocab) ||
        moe_detokenizer_new(e->cfg.tok, 1, &sl->dt) != MOE_OK) {
        moe_sampler_free(&sl->sampler);
        e->c.failed++;
        end_request(e, r, NULL, 500, "out of memory for a new request");
        return 0;
    }
    sl->stop.stops = r->g.stops;
    sl->stop.n_stops = r->g.n_stops;
    sl->r = r;
    sl->fed = sl->produced = 0;
    sl->order = e->admitted++;
    r->admitted = 1;
    notify(r);
    return 1;
}

/* The end of a generation that no stop string cut: whatever the detokenizer and the stop filter
 * still hold (a stop string may still complete in the detokenizer's last bytes). */
static moe_status drain(slot *sl, char **buf, size_t *len, size_t *cap) {
    const char *text, *out;
    size_t n, m;
    if (sl->stop.hit) return MOE_OK;
    MOE_TRY(moe_detokenizer_flush(sl->dt, &text, &n));
    MOE_TRY(moe_stop_push(&sl->stop, text, n, &out, &m));
    MOE_TRY(append(buf, len, cap, out, m));
    if (!sl->stop.hit) {
        moe_stop_flush(&sl->stop, &out, &m);
        MOE_TRY(append(buf, len, cap, out, m));
    }
    return MOE_OK;
}

static void schedule(srv_engine *e, double now) {
    for (int i = 0; i < e->cfg.max_batch; i++) {
        slot *sl = &e->slots[i];
        srv_req *r = sl->r;
        if (!r) continue;
        if (r->cancelled) {
            e->c.cancelled++;
            end_request(e, r, NULL, 499, "client closed the connection");
            free_slot(e, sl);
        } else if (now >= r->deadline) {
            /* the time limit ends a generation like max_tokens does */
            if (sl->fed >= r->n_prompt && drain(sl, &r->text, &r->text_len, &r->text_cap) != MOE_OK) {
                e->c.failed++;
                end_request(e, r, NULL, 500, "out of memory");
            } else {
                e->c.gen_tokens += (uint64_t)sl->produced;
                end_request(e, r, "length", 0, NULL);
            }
            free_slot(e, sl);
        }
    }
    /* queued requests: expired ones fail, the oldest get free slots */
    for (srv_req **pp = &e->q_head; *pp;) {
        srv_req *r = *pp;
        if (now - r->t_submit < e->cfg.queue_timeout) { pp = &r->next; continue; }
        *pp = r->next;
        e->c.queued--;
        e->c.queue_timeouts++;
        char msg[128];
        snprintf(msg, sizeof msg, "no free slot within %g s (the server is busy; retry later)", e->cfg.queue_timeout);
        end_request(e, r, NULL, 503, msg);
    }
    e->q_tail = NULL;
    for (srv_req *r = e->q_head; r; r = r->next) e->q_tail = r;
    for (int i = 0; i < e->cfg.max_batch && e->q_head; i++) {
        slot *sl = &e->slots[i];
        if (sl->r) continue;
        srv_req *r = e->q_head;
        e->q_head = r->next;
        if (!e->q_head) e->q_tail = NULL;
        e->c.queued--;
        admit(e, sl, r);
    }
    int active = 0;
    for (int i = 0; i < e->cfg.max_batch; i++) active += e->slots[i].r != NULL;
    e->c.active = active;
}

/* Under the mutex: the sequences of the next step. Returns how many. */
static int plan(srv_engine *e) {
    int nb = 0, budget = e->cfg.prefill_chunk;
    for (int i = 0; i < e->cfg.max_batch; i++) {
        slot *sl = &e->slots[i];
        sl->take = sl->prefill = 0;
        if (!sl->r || sl->fed < sl->r->n_prompt) continue;
        sl->take = 1;   /* decoding: the token sampled last step */
        e->batch[nb] = (moe_batch_seq){sl->s, &sl->next_tok, 1, sl->logits, 0};
        e->batch_slot[nb++] = i;
    }
    while (budget > 0) {   /* prompts: oldest request first */
        slot *best = NULL;
        for (int i = 0; i < e->cfg.max_batch; i++) {
            slot *sl = &e->slots[i];
            if (sl->r && !sl->take && sl->fed < sl->r->n_prompt && (!best || sl->order < best->order)) best = sl;
        }
        if (!best) break;
        int left = best->r->n_prompt - best->fed, n = left < budget ? left : budget;
        best->take = n;
        best->prefill = 1;
        budget -= n;
        e->batch[nb] = (moe_batch_seq){best->s, best->r->prompt + best->fed, n, n == left ? best->logits : NULL, 0};
        e->batch_slot[nb++] = (int)(best - e->slots);
    }
    return nb;
}

/* The log-probability of token id and the n most likely tokens (in descending order). */
static void log_probs(const float *logits, int V, int32_t id, int n, srv_tok *t) {
    float mx = logits[0];
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    t->id = id;
    t->lp = (float)(logits[id] - lse);
    t->n_top = 0;
    for (int i = 0; i < V && n > 0; i++) {   /* insertion into a short sorted list; ties keep the lower id */
        float v = logits[i];
        if (t->n_top == n && v <= logits[t->top_id[n - 1]]) continue;
        int k = t->n_top < n ? t->n_top++ : n - 1;
        while (k > 0 && logits[t->top_id[k - 1]] < v) { t->top_id[k] = t->top_id[k - 1]; k--; }
        t->top_id[k] = i;
    }
    for (int k = 0; k < t->n_top; k++) t->top_lp[k] = (float)(logits[t->top_id[k]] - lse);
}

/* Outside the mutex: what a slot's new logits produce. Sets sl->emit / sl->end. */
static moe_status sample(srv_engine *e, slot *sl, const srv_req *r) {
    sl->emit_len = 0;
    sl->end = NULL;
    sl->first = sl->produced == 0;
    int32_t id = moe_sampler_next(&sl->sampler, sl->logits);
    sl->has_tok = 0;
    if (moe_eos_has(&r->g.eos, id)) { sl->end = "stop"; }
    else {
        if (r->g.logprobs >= 0) {
            log_probs(sl->logits, e->vocab, id, r->g.logprobs < SRV_MAX_TOP ? r->g.logprobs : SRV_MAX_TOP, &sl->tok);
            sl->has_tok = 1;
        }
        sl->produced++;
        const char *text, *out;
        size_t len, n;
        MOE_TRY(moe_detokenizer_push(sl->dt, id, &text, &len));
        MOE_TRY(moe_stop_push(&sl->stop, text, len, &out, &n));
        MOE_TRY(append(&sl->emit, &sl->emit_len, &sl->emit_cap, out, n));
        if (sl->stop.hit) sl->end = "stop";
        else if (sl->produced >= r->g.max_tokens || moe_session_pos(sl->s) >= e->cfg.ctx) sl->end = "length";
        sl->next_tok = id;
    }
    if (sl->end) MOE_TRY(drain(sl, &sl->emit, &sl->emit_len, &sl->emit_cap));
    return MOE_OK;
}

static void *engine_main(void *arg) {
    srv_engine *e = arg;
    moe_set_threads(e->cfg.threads);   /* OpenMP's thread count is per calling thread */
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && !e->q_head && !e->c.active) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stopping) break;
        schedule(e, now_s());
        int nb = plan(e);
        if (nb == 0) continue;
        pthread_mutex_unlock(&e->mu);

        double t0 = now_s();
        moe_status st = moe_session_eval_batch(e->batch, nb);
        char err[256] = "";
        if (st != MOE_OK) snprintf(err, sizeof err, "the forward pass failed: %s", moe_last_error());
        int rows = 0;
        for (int j = 0; j < nb; j++) rows += e->batch[j].n_tokens;
        for (int j = 0; j < nb && st == MOE_OK; j++) {
            slot *sl = &e->slots[e->batch_slot[j]];
            sl->emit_len = 0;
            sl->end = NULL;
            sl->first = sl->has_tok = 0;
            if (sl->prefill) {
                sl->fed += sl->take;
                if (sl->fed < sl->r->n_prompt) continue;
            }
            moe_status ss = sample(e, sl, sl->r);
            if (ss != MOE_OK) { sl->end = "error"; snprintf(err, sizeof err, "%s", moe_last_error()); }
        }
        double dt = now_s() - t0;

        pthread_mutex_lock(&e->mu);
        e->c.steps++;
        e->c.step_rows += (uint64_t)rows;
        e->c.step_seqs += (uint64_t)nb;
        e->c.step_seconds += dt;
        e->c.broken = st != MOE_OK;
        for (int j = 0; j < nb; j++) {
            slot *sl = &e->slots[e->batch_slot[j]];
            srv_req *r = sl->r;
            if (st != MOE_OK || (sl->end && !strcmp(sl->end, "error"))) {
                e->c.failed++;
                end_request(e, r, NULL, 500, err);
                free_slot(e, sl);
                continue;
            }
            if (sl->prefill) e->c.prompt_tokens += (uint64_t)sl->take;
            if (sl->fed < r->n_prompt) continue;
            if (sl->first && !r->got_first) {
                hist_add(&e->ttft, now_s() - r->t_submit);
                r->got_first = 1;
            }
            if (sl->has_tok && r->n_toks == r->cap_toks) {
                int cap = r->cap_toks ? 2 * r->cap_toks : 16;
                srv_tok *t = realloc(r->toks, sizeof *t * (size_t)cap);
                if (t) { r->toks = t; r->cap_toks = cap; }
            }
            if (sl->has_tok && r->n_toks < r->cap_toks) r->toks[r->n_toks++] = sl->tok;
            if (sl->emit_len || sl->end || sl->has_tok) {
                append(&r->text, &r->text_len, &r->text_cap, sl->emit, sl->emit_len);
                r->completion_tokens = sl->produced;
                notify(r);
            }
            if (sl->end) {
                e->c.gen_tokens += (uint64_t)sl->produced;
                end_request(e, r, sl->end, 0, NULL);
                free_slot(e, sl);
            }
        }
        int active = 0;
        for (int i = 0; i < e->cfg.max_batch; i++) active += e->slots[i].r != NULL;
        e->c.active = active;
    }
    /* stopping: everybody gets an answer */
    for (int i = 0; i < e->cfg.max_batch; i++)
        if (e->slots[i].r) { end_request(e, e->slots[i].r, NULL, 503, "the server is shutting down"); free_slot(e, &e->slots[i]); }
    while (e->q_head) {
        srv_req *r = e->q_head;
        e->q_head = r->next;
        end_request(e, r, NULL, 503, "the server is shutting down");
    }
    e->q_tail = NULL;
    e->c.queued = e->c.active = 0;
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- the engine ----------------------------------------------------------------------------- */

void srv_engine_free(srv_engine *e) {
    if (!e) return;
    for (int i = 0; e->slots && i < e->cfg.max_batch; i++) {
        moe_session_free(e->slots[i].s);
        free(e->slots[i].logits);
        free(e->slots[i].emit);
    }
    free(e->slots);
    free(e->batch);
    free(e->batch_slot);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

moe_status srv_engine_start(const srv_engine_cfg *cfg, srv_engine **out) {
    *out = NULL;
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) return moe_fail(MOE_ENOMEM, "out of memory");
    e->cfg = *cfg;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->vocab = moe_model_get_info(cfg->model)->vocab_size;
    e->slots = calloc((size_t)cfg->max_batch, sizeof *e->slots);
    e->batch = calloc((size_t)cfg->max_batch, sizeof *e->batch);
    e->batch_slot = calloc((size_t)cfg->max_batch, sizeof *e->batch_slot);
    if (!e->slots || !e->batch || !e->batch_slot) { srv_engine_free(e); return moe_fail(MOE_ENOMEM, "out of memory"); }
    for (int i = 0; i < cfg->max_batch; i++) {
        moe_status st = moe_session_new(cfg->model, cfg->ctx, &e->slots[i].s);
        e->slots[i].logits = malloc(sizeof(float) * (size_t)e->vocab);
        if (st == MOE_OK && !e->slots[i].logits) st = moe_fail(MOE_ENOMEM, "out of memory");
        if (st != MOE_OK) {
            srv_engine_free(e);
            return st;
        }
    }
    e->c.slots = cfg->max_batch;
    if (pthread_create(&e->th, NULL, engine_main, e) != 0) {
        srv_engine_free(e);
        return moe_fail(MOE_ENOMEM, "cannot start the engine thread");
    }
    e->started = 1;
    *out = e;
    return MOE_OK;
}

void srv_engine_stop(srv_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started) pthread_join(e->th, NULL);
    e->started = 0;
}

void srv_engine_counters(srv_engine *e, srv_counters *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->c;
    pthread_mutex_unlock(&e->mu);
}

void srv_engine_hists(srv_engine *e, srv_hist *ttft, srv_hist *total) {
    pthread_mutex_lock(&e->mu);
    *ttft = e->ttft;
    *total = e->total;
    pthread_mutex_unlock(&e->mu);
}

int srv_submit(srv_engine *e, srv_req *r) {
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    if (e->stopping) rc = 503;
    else if (e->c.active + e->c.queued >= e->cfg.max_batch + e->cfg.queue) { rc = 429; e->c.rejected_full++; }
    if (!rc) {
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
        r->t_submit = now_s();
        r->deadline = r->g.time_limit > 0 ? r->t_submit + r->g.time_limit : INFINITY;
        r->next = NULL;
        if (e->q_tail) e->q_tail->next = r;
        else e->q_head = r;
        e->q_tail = r;
        e->c.queued++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

moe_status srv_req_take(srv_engine *e, srv_req *r, char **buf, size_t *len, size_t *cap, srv_progress *p) {
    uint64_t v;
    if (read(r->efd, &v, sizeof v) < 0 && errno != EAGAIN) { /* nothing to clear */ }
    pthread_mutex_lock(&e->mu);
    moe_status st = append(buf, len, cap, r->text ? r->text + r->taken : "", r->text_len - r->taken);
    if (st == MOE_OK) r->taken = r->text_len;
    p->admitted = r->admitted;
    p->done = r->done;
    p->finish = r->finish;
    p->http_status = r->http_status;
    snprintf(p->error, sizeof p->error, "%s", r->error);
    p->prompt_tokens = r->n_prompt;
    p->completion_tokens = r->completion_tokens;
    pthread_mutex_unlock(&e->mu);
    return st;
}

moe_status srv_req_take_tokens(srv_engine *e, srv_req *r, srv_tok **toks, int *n, int *cap) {
    pthread_mutex_lock(&e->mu);
    int add = r->n_toks - r->toks_taken;
    moe_status st = MOE_OK;
    if (*n + add > *cap) {
        int c = (*n + add) * 2;
        srv_tok *t = realloc(*toks, sizeof *t * (size_t)c);
        if (!t) st = moe_fail(MOE_ENOMEM, "out of memory");
        else { *toks = t; *cap = c; }
    }
    if (st == MOE_OK && add > 0) {
        memcpy(*toks + *n, r->toks + r->toks_taken, sizeof **toks * (size_t)add);
        *n += add;
        r->toks_taken = r->n_toks;
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

void srv_cancel(srv_engine *e, srv_req *r) {
    pthread_mutex_lock(&e->mu);
    if (!r->done && !r->cancelled) {
        r->cancelled = 1;
        /* still queued: leave the queue now; in a slot: the engine frees it before its next step */
        for (srv_req **pp = &e->q_head; *pp; pp = &(*pp)->next)
            if (*pp == r) {
                *pp = r->next;
                e->q_tail = NULL;
                for (srv_req *q = e->q_head; q; q = q->next) e->q_tail = q;
                e->c.queued--;
                e->c.cancelled++;
                end_request(e, r, NULL, 499, "client closed the connection");
                break;
            }
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
}
