/* expert_store_disk.c - routed experts read from disk into a bounded set of slots.
 *
 * Memory. The budget buys n_slots = budget / slot_bytes slots, slot_bytes being the largest expert's
 * read size rounded to pages. Slots live in one anonymous mapping, so untouched slots cost nothing and
 * the resident total never exceeds the budget. Everything else here (maps, counters) is a few bytes
 * per expert: the "small stated overhead" of docs/OFFLOAD.md.
 *
 * Reads. An expert's three matrices are usually adjacent in the file (HF checkpoints sort tensor names,
 * `moe quantize` writes gate, up, down back to back): then loading it is one pread of one page-aligned
 * span. Otherwise it takes one pread per matrix. Reading from page boundaries keeps each matrix at the
 * same alignment as in the mmap and satisfies O_DIRECT.
 *
 * States. A slot is EMPTY, LOADING or READY and has a pin count (acquired, not yet released). Pinned or
 * LOADING slots are never evicted. A miss in acquire reads synchronously on the calling thread; with
 * prefetch, reader threads serve two queues: the current layer's experts (announced by prefetch before
 * the layer computes, so the second expert's read overlaps the first one's product) and, at lower
 * priority, the next layer's predicted experts. A speculative read never evicts an expert the current
 * layer needs or another live prediction; a wrong prediction is cancelled if still queued when the
 * layer routes, and otherwise just costs its read: acquire falls back to reading on demand. A failed
 * asynchronous read is dropped silently; the demand read that follows reports the error.
 *
 * Eviction asks the policy (cache_policy.c) for a value per candidate; this file owns all counters. */
#include "moe/expert_store_disk.h"
#include "core/error.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u

enum { S_EMPTY = 0, S_LOADING, S_READY };
enum { FOR_DEMAND, FOR_PREFETCH, FOR_PREDICT };

typedef struct seg {
    int file;
    uint64_t off, len, need, dst; /* page-aligned file offset and length, bytes that must exist, slot offset */
} seg;

typedef struct expert_loc {
    int present, n_seg;
    seg seg[3];
    moe_ffn_weights w;   /* dtype and shape; data filled at acquire */
    uint64_t rel[3];     /* offsets of gate, up, down in the slot */
    uint64_t bytes;      /* slot bytes this expert needs */
} expert_loc;

typedef struct slot {
    int key, state, pins;
    int stage;           /* a staging slot: only predictions are read into it (see pick_victim) */
    int queue;           /* 0 none, 1 demand queue, 2 prediction queue (not yet picked by a reader) */
    int speculative;     /* read for a prediction and not used yet */
    uint64_t last_use;
    unsigned char *buf;
} slot;

typedef struct fifo { int *v, head, len, cap; } fifo;

typedef struct disk {
    moe_disk_store_config cfg;
    moe_store *store;
    int n_files, *fds;
    uint64_t *fsize;
    char **paths;
    int nk;                      /* n_layers * n_experts */
    expert_loc *loc;
    int *where;                  /* key -> slot or -1 */
    uint64_t *uses, *demand_step;
    uint32_t *seq_uses, *seq_tokens;
    float *hist;
    unsigned char *pred_mark, *pred_active;
    int *layer_rank, n_moe, first_moe;
    uint64_t step, now;
    slot *slots;
    int n_slots;
    uint64_t slot_bytes, expert_bytes;
    unsigned char *slab;
    size_t slab_bytes;
    fifo q_demand, q_pred;
    pthread_mutex_t mu;
    pthread_cond_t cv_done, cv_work;
    pthread_t *threads;
    int n_threads, stop;
    moe_offload_stats st;
} disk;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- queues ---------------------------------------------------------------------------------- */

static void fifo_push(fifo *q, int v) { q->v[(q->head + q->len++) % q->cap] = v; }
static int fifo_pop(fifo *q) {
    int v = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return v;
}
static void fifo_remove(fifo *q, int v) {
    int w = 0;
    for (int i = 0; i < q->len; i++) {
        int x = q->v[(q->head + i) % q->cap];
        if (x != v) q->v[(q->head + w++) % q->cap] = x;
    }
    q->len = w;
}

/* ---- reading ---------------------------------------------------------------------------------- */

static moe_status read_expert(disk *d, int key, unsigned char *buf, uint64_t *bytes) {
    const expert_loc *x = &d->loc[key];
    *bytes = 0;
    for (int i = 0; i < x->n_seg; i++) {
        const seg *s = &x->seg[i];
        uint64_t done = 0;
        while (done < s->len) {
            ssize_t r = pread(d->fds[s->file], buf + s->dst + done, (size_t)(s->len - done), (off_t)(s->off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0)
                return moe_fail(MOE_EIO, "%s: reading expert %d of layer %d at offset %llu: %s", d->paths[s->file],
                                key % d->cfg.n_experts, key / d->cfg.n_experts, (unsigned long long)(s->off + done),
                                strerror(errno));
            if (r == 0) break;
            done += (uint64_t)r;
        }
        *bytes += done;
        if (done < s->need)
            return moe_fail(MOE_EINPUT, "%s: file ended at byte %llu inside expert %d of layer %d (truncated?)",
                            d->paths[s->file], (unsigned long long)(s->off + done), key % d->cfg.n_experts,
                            key / d->cfg.n_experts);
    }
    return MOE_OK;
}

static void *reader_main(void *arg) {
    disk *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->stop && !d->q_demand.len && !d->q_pred.len) pthread_cond_wait(&d->cv_work, &d->mu);
        if (d->stop) break;
        int si = d->q_demand.len ? fifo_pop(&d->q_demand) : fifo_pop(&d->q_pred);
        slot *s = &d->slots[si];
        s->queue = 0;
        int key = s->key;
        pthread_mutex_unlock(&d->mu);
        uint64_t bytes;
        moe_status st = read_expert(d, key, s->buf, &bytes);
        pthread_mutex_lock(&d->mu);
        d->st.reads++;
        d->st.bytes_read += bytes;
        if (st == MOE_OK) {
            s->state = S_READY;
        } else { /* drop it: the demand read in acquire will report the error */
            d->where[key] = -1;
            s->key = -1;
            s->state = S_EMPTY;
            s->speculative = 0;
        }
        pthread_cond_broadcast(&d->cv_done);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- eviction --------------------------------------------------------------------------------- */

static void key_stats(const disk *d, const slot *s, moe_cache_key_stats *k) {
    int layer = s->key / d->cfg.n_experts;
    k->layer_rank = d->layer_rank[layer];
    k->n_moe_layers = d->n_moe;
    k->top_k = d->cfg.top_k;
    k->now = d->now;
    k->last_use = s->last_use;
    k->uses = d->uses[s->key];
    k->seq_uses = d->seq_uses[s->key];
    k->seq_tokens = d->seq_tokens[layer];
    k->hist = d->hist[s->key];
}

/* The slot to load into, or -1. Classes: 0 empty, 1 ordinary, 2 holds a live prediction, 3 holds an
 * expert the current layer needs. Demand loads may take any class, the current layer's prefetch up to
 * 2, predictions only 0 and 1; within a class the policy's lowest value goes first.
 * Predictions are read only into staging slots, demand into the others (the cache), so that a wrong
 * guess never evicts a cached expert; a staging slot whose expert gets used swaps roles with the
 * cache's victim (promote). Demand falls back to staging slots only when the cache has no victim. */
static int pick_in(disk *d, int purpose, int stage);
static int pick_victim(disk *d, int purpose) {
    if (purpose == FOR_PREDICT) return pick_in(d, purpose, 1);
    int si = pick_in(d, purpose, 0);
    return si >= 0 || purpose != FOR_DEMAND ? si : pick_in(d, purpose, 1);
}

static int pick_in(disk *d, int purpose, int stage) {
    int max_class = purpose == FOR_DEMAND ? 3 : purpose == FOR_PREFETCH ? 2 : 1;
    int best = -1, best_class = 4;
    double best_v = 0;
    for (int i = 0; i < d->n_slots; i++) {
        slot *s = &d->slots[i];
        if (s->pins || s->state == S_LOADING || s->stage != stage) continue;
        int c = s->state == S_EMPTY ? 0 : d->demand_step[s->key] == d->step ? 3 : d->pred_mark[s->key] ? 2 : 1;
        if (c > max_class || c > best_class) continue;
        double v = 0;
        if (c > 0) {
            moe_cache_key_stats k;
            key_stats(d, s, &k);
            v = d->cfg.policy->value(&k);
        }
        if (c < best_class || v < best_v) { best = i; best_class = c; best_v = v; }
        if (c == 0) break;
    }
    return best;
}

static void take_slot(disk *d, int si, int key) {
    slot *s = &d->slots[si];
    if (s->state != S_EMPTY) {
        if (s->speculative) d->st.wasted_reads++;
        d->where[s->key] = -1;
    }
    s->key = key;
    s->state = S_LOADING;
    s->speculative = 0;
    s->last_use = d->now;
    d->where[key] = si;
}

/* A used staging slot joins the cache; the cache's victim becomes a staging slot (its expert stays
 * readable there until a prediction overwrites it). */
static void promote(disk *d, int si) {
    int v = pick_in(d, FOR_DEMAND, 0);
    if (v < 0) return;
    d->slots[si].stage = 0;
    d->slots[v].stage = 1;
}

/* ---- store operations ------------------------------------------------------------------------- */

static void fill_view(const disk *d, int key, const slot *s, moe_ffn_weights *out) {
    const expert_loc *x = &d->loc[key];
    *out = x->w;
    out->gate.data = s->buf + x->rel[0];
    out->up.data = s->buf + x->rel[1];
    out->down.data = s->buf + x->rel[2];
}

static moe_status acquire(void *self, int layer, int expert, moe_ffn_weights *out) {
    disk *d = self;
    if (layer < 0 || layer >= d->cfg.n_layers || expert < 0 || expert >= d->cfg.n_experts ||
        !d->loc[layer * d->cfg.n_experts + expert].present)
        return moe_fail(MOE_EINTERNAL, "expert store: no expert %d in layer %d", expert, layer);
    int key = layer * d->cfg.n_experts + expert;
    double t0 = 0;
    int counted = 0;
    pthread_mutex_lock(&d->mu);
    d->now++;
    d->uses[key]++;
    d->st.lookups++;
    for (;;) {
        int si = d->where[key];
        if (si >= 0 && d->slots[si].state == S_READY) {
            slot *s = &d->slots[si];
            if (!counted) d->st.hits++;
            if (s->stage) promote(d, si);
            s->pins++;
            s->speculative = 0;
            s->last_use = d->now;
            fill_view(d, key, s, out);
            if (t0) d->st.stall_ms += now_ms() - t0;
            pthread_mutex_unlock(&d->mu);
            return MOE_OK;
        }
        if (si >= 0 && d->slots[si].queue) {
            /* queued, no reader has it yet: read it here rather than wait behind other reads */
            slot *s = &d->slots[si];
            fifo_remove(s->queue == 1 ? &d->q_demand : &d->q_pred, si);
            s->queue = 0;
            if (!counted) { d->st.inflight++; counted = 1; }
        } else if (si >= 0) { /* a reader is on it */
            if (!counted) { d->st.inflight++; counted = 1; }
            if (!t0) t0 = now_ms();
            pthread_cond_wait(&d->cv_done, &d->mu);
            continue;
        } else {
            si = pick_victim(d, FOR_DEMAND);
            if (si < 0) {
                int loading = 0;
                for (int i = 0; i < d->n_slots; i++) loading |= d->slots[i].state == S_LOADING;
                if (!loading) {
                    pthread_mutex_unlock(&d->mu);
                    return moe_fail(MOE_EINTERNAL, "expert store: all %d slots are pinned", d->n_slots);
                }
                if (!t0) t0 = now_ms();
                pthread_cond_wait(&d->cv_done, &d->mu);
                continue;
            }
            if (!counted) { d->st.misses++; counted = 1; }
            take_slot(d, si, key);
        }
        /* read synchronously into slot si, which is LOADING and pinned against readers and evictions */
        slot *s = &d->slots[si];
        s->pins++;
        pthread_mutex_unlock(&d->mu);
        double r0 = now_ms();
        uint64_t bytes;
        moe_status st = read_expert(d, key, s->buf, &bytes);
        double r1 = now_ms();
        pthread_mutex_lock(&d->mu);
        d->st.reads++;
        d->st.bytes_read += bytes;
        d->st.stall_ms += r1 - r0;
        if (st != MOE_OK) {
            s->pins--;
            d->where[key] = -1;
            s->key = -1;
            s->state = S_EMPTY;
            pthread_cond_broadcast(&d->cv_done);
            pthread_mutex_unlock(&d->mu);
            return st;
        }
        s->state = S_READY;
        s->speculative = 0;
        s->last_use = d->now;
        if (s->stage) promote(d, si);
        fill_view(d, key, s, out);
        if (t0) d->st.stall_ms += r0 - t0;
        pthread_cond_broadcast(&d->cv_done);
        pthread_mutex_unlock(&d->mu);
        return MOE_OK;
    }
}

static void release(void *self, int layer, int expert) {
    disk *d = self;
    int key = layer * d->cfg.n_experts + expert;
    pthread_mutex_lock(&d->mu);
    int si = d->where[key];
    if (si >= 0 && d->slots[si].pins > 0) {
        slot *s = &d->slots[si];
        if (--s->pins == 0 && !d->cfg.policy->keeps && s->state == S_READY) {
            d->where[key] = -1;
            s->key = -1;
            s->state = S_EMPTY;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

/* Queue reads for experts not resident; stop at the first that finds no slot of its class. */
static void queue_reads(disk *d, int layer, const int *experts, int n, int purpose) {
    int queued = 0;
    for (int i = 0; i < n; i++) {
        if (experts[i] < 0 || experts[i] >= d->cfg.n_experts) continue;
        int key = layer * d->cfg.n_experts + experts[i];
        if (!d->loc[key].present || d->where[key] >= 0) continue;
        int si = pick_victim(d, purpose);
        if (si < 0) break;
        take_slot(d, si, key);
        slot *s = &d->slots[si];
        s->speculative = purpose == FOR_PREDICT;
        s->queue = purpose == FOR_PREDICT ? 2 : 1;
        fifo_push(purpose == FOR_PREDICT ? &d->q_pred : &d->q_demand, si);
        queued++;
    }
    if (queued) pthread_cond_broadcast(&d->cv_work);
}

static void prefetch(void *self, int layer, const int *experts, int n) {
    disk *d = self;
    if (!d->cfg.prefetch || layer < 0 || layer >= d->cfg.n_layers) return;
    pthread_mutex_lock(&d->mu);
    queue_reads(d, layer, experts, n, FOR_PREFETCH);
    pthread_mutex_unlock(&d->mu);
}

static void predict(void *self, int layer, const int *experts, int n) {
    disk *d = self;
    if (!d->cfg.prefetch || layer < 0 || layer >= d->cfg.n_layers) return;
    pthread_mutex_lock(&d->mu);
    d->pred_active[layer] = 1;
    for (int i = 0; i < n; i++)
        if (experts[i] >= 0 && experts[i] < d->cfg.n_experts) {
            unsigned char *m = &d->pred_mark[layer * d->cfg.n_experts + experts[i]];
            d->st.predicted += !*m;
            *m = 1;
        }
    queue_reads(d, layer, experts, n, FOR_PREDICT);
    pthread_mutex_unlock(&d->mu);
}

static void new_sequence(disk *d) {
    int E = d->cfg.n_experts;
    for (int k = 0; k < d->nk; k++) {
        uint32_t t = d->seq_tokens[k / E];
        if (t) d->hist[k] = 0.5f * d->hist[k] + 0.5f * (float)d->seq_uses[k] / (float)t;
        d->seq_uses[k] = 0;
    }
    memset(d->seq_tokens, 0, sizeof *d->seq_tokens * (size_t)d->cfg.n_layers);
}

static void route(void *self, int layer, int pos0, int n_tok, const int *experts, const int *counts, int n) {
    disk *d = self;
    if (layer < 0 || layer >= d->cfg.n_layers) return;
    int E = d->cfg.n_experts;
    pthread_mutex_lock(&d->mu);
    if (layer == d->first_moe) {
        if (pos0 == 0) new_sequence(d);
        d->st.tokens += (uint64_t)n_tok;
    }
    d->step++;
    d->seq_tokens[layer] += (uint32_t)n_tok;
    for (int i = 0; i < n; i++) {
        if (experts[i] < 0 || experts[i] >= E) continue;
        int key = layer * E + experts[i];
        d->demand_step[key] = d->step;
        d->seq_uses[key] += (uint32_t)counts[i];
    }
    if (d->pred_active[layer]) {
        d->st.needed_predicted += (uint64_t)n;
        for (int i = 0; i < n; i++)
            if (experts[i] >= 0 && experts[i] < E) d->st.predicted_used += d->pred_mark[layer * E + experts[i]];
        /* cancel predicted reads of this layer that no reader has started and nobody needs */
        for (int e = 0; e < E; e++) {
            int key = layer * E + e, si = d->where[key];
            if (d->pred_mark[key] && si >= 0 && d->slots[si].queue == 2 && d->demand_step[key] != d->step) {
                fifo_remove(&d->q_pred, si);
                slot *s = &d->slots[si];
                s->queue = 0;
                s->key = -1;
                s->state = S_EMPTY;
                s->speculative = 0;
                d->where[key] = -1;
            }
            d->pred_mark[key] = 0;
        }
        d->pred_active[layer] = 0;
    }
    pthread_mutex_unlock(&d->mu);
}

static void destroy(void *self) {
    disk *d = self;
    if (d->threads) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_broadcast(&d->cv_work);
        pthread_mutex_unlock(&d->mu);
        for (int i = 0; i < d->n_threads; i++) pthread_join(d->threads[i], NULL);
        free(d->threads);
    }
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv_done);
    pthread_cond_destroy(&d->cv_work);
    for (int i = 0; i < d->n_files; i++) {
        if (d->fds && d->fds[i] >= 0) close(d->fds[i]);
        if (d->paths) free(d->paths[i]);
    }
    if (d->slab) munmap(d->slab, d->slab_bytes);
    free(d->fds); free(d->fsize); free(d->paths);
    free(d->loc); free(d->where); free(d->uses); free(d->demand_step);
    free(d->seq_uses); free(d->seq_tokens); free(d->hist); free(d->pred_mark); free(d->pred_active);
    free(d->layer_rank); free(d->slots);
    free(d->q_demand.v); free(d->q_pred.v);
    free(d);
}

static const moe_store_ops k_disk_ops = {"disk", acquire, release, prefetch, destroy, route, predict};

/* ---- construction ----------------------------------------------------------------------------- */

moe_status moe_store_disk_new(const moe_disk_store_config *cfg, const char *const *paths, int n_files,
                              moe_store **out) {
    *out = NULL;
    if (cfg->n_layers <= 0 || cfg->n_experts <= 0 || n_files <= 0 || cfg->budget <= 0)
        return moe_fail(MOE_EINTERNAL, "expert store: bad configuration");
    moe_store *s = calloc(1, sizeof *s);
    disk *d = calloc(1, sizeof *d);
    if (!s || !d) { free(s); free(d); return moe_fail(MOE_ENOMEM, "out of memory"); }
    d->cfg = *cfg;
    if (!d->cfg.policy) d->cfg.policy = moe_cache_policy_find("lru");
    if (d->cfg.io_threads <= 0) d->cfg.io_threads = 2;
    d->store = s;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv_done, NULL);
    pthread_cond_init(&d->cv_work, NULL);
    s->ops = &k_disk_ops;
    s->self = d;
    s->predict_next = cfg->prefetch && cfg->predict;
    d->n_files = n_files;
    d->nk = cfg->n_layers * cfg->n_experts;
    size_t nk = (size_t)d->nk, L = (size_t)cfg->n_layers;
    d->fds = malloc(sizeof *d->fds * (size_t)n_files);
    d->fsize = calloc((size_t)n_files, sizeof *d->fsize);
    d->paths = calloc((size_t)n_files, sizeof *d->paths);
    d->loc = calloc(nk, sizeof *d->loc);
    d->where = malloc(sizeof *d->where * nk);
    d->uses = calloc(nk, sizeof *d->uses);
    d->demand_step = calloc(nk, sizeof *d->demand_step);
    d->seq_uses = calloc(nk, sizeof *d->seq_uses);
    d->hist = calloc(nk, sizeof *d->hist);
    d->pred_mark = calloc(nk, 1);
    d->pred_active = calloc(L, 1);
    d->seq_tokens = calloc(L, sizeof *d->seq_tokens);
    d->layer_rank = calloc(L, sizeof *d->layer_rank);
    if (!d->fds || !d->fsize || !d->paths || !d->loc || !d->where || !d->uses || !d->demand_step || !d->seq_uses ||
        !d->hist || !d->pred_mark || !d->pred_active || !d->seq_tokens || !d->layer_rank) {
        if (d->fds) for (int i = 0; i < n_files; i++) d->fds[i] = -1;
        moe_store_destroy(s);
        return moe_fail(MOE_ENOMEM, "out of memory");
    }
    for (size_t k = 0; k < nk; k++) d->where[k] = -1;
    for (int i = 0; i < n_files; i++) d->fds[i] = -1;
    for (int i = 0; i < n_files; i++) {
        d->paths[i] = strdup(paths[i]);
        int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (cfg->direct_io ? O_DIRECT : 0);   /* O_NONBLOCK: a FIFO swapped in must not block */
        d->fds[i] = d->paths[i] ? open(paths[i], flags) : -1;
        struct stat sb;
        if (d->fds[i] >= 0 && fstat(d->fds[i], &sb) == 0 && !S_ISREG(sb.st_mode)) {
            moe_status st = moe_fail(MOE_EINPUT, "%s: not a regular file", paths[i]);
            moe_store_destroy(s);
            return st;
        }
        if (d->fds[i] < 0 || fstat(d->fds[i], &sb) != 0) {
            moe_status st = moe_fail(MOE_EIO, "%s: cannot open for expert reads%s: %s", paths[i],
                                     cfg->direct_io ? " with O_DIRECT" : "", strerror(errno));
            moe_store_destroy(s);
            return st;
        }
        d->fsize[i] = (uint64_t)sb.st_size;
    }
    *out = s;
    return MOE_OK;
}

static int cmp_range(const void *a, const void *b) {
    const uint64_t *x = a, *y = b; /* file, begin */
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

moe_status moe_store_disk_add(moe_store *s, int layer, int expert, const int file[3], const moe_ffn_weights *w,
                              const uint64_t off[3]) {
    disk *d = s->self;
    if (layer < 0 || layer >= d->cfg.n_layers || expert < 0 || expert >= d->cfg.n_experts)
        return moe_fail(MOE_EINTERNAL, "expert store: expert %d of layer %d out of range", expert, layer);
    expert_loc *x = &d->loc[layer * d->cfg.n_experts + expert];
    if (x->present) return moe_fail(MOE_EINTERNAL, "expert store: expert %d of layer %d added twice", expert, layer);
    const moe_tensor *t[3] = {&w->gate, &w->up, &w->down};
    uint64_t r[3][3]; /* file, begin, end */
    for (int i = 0; i < 3; i++) {
        if (file[i] < 0 || file[i] >= d->n_files) return moe_fail(MOE_EINTERNAL, "expert store: bad file index");
        r[i][0] = (uint64_t)file[i];
        r[i][1] = off[i];
        r[i][2] = off[i] + t[i]->nbytes;
        if (r[i][2] < r[i][1] || r[i][2] > d->fsize[file[i]])
            return moe_fail(MOE_EINPUT, "%s: expert %d of layer %d lies past the end of the file", d->paths[file[i]],
                            expert, layer);
    }
    qsort(r, 3, sizeof r[0], cmp_range);
    /* matrices of one file separated by less than a page share one read */
    int n = 0;
    for (int i = 0; i < 3; i++) {
        seg *g = n ? &x->seg[n - 1] : NULL;
        if (g && (uint64_t)g->file == r[i][0] && r[i][1] <= g->off + g->need + PAGE) {
            if (r[i][2] - g->off > g->need) g->need = r[i][2] - g->off;
        } else {
            g = &x->seg[n++];
            g->file = (int)r[i][0];
            g->off = r[i][1] / PAGE * PAGE;
            g->need = r[i][2] - g->off;
        }
    }
    uint64_t dst = 0;
    for (int j = 0; j < n; j++) {
        x->seg[j].len = (x->seg[j].need + PAGE - 1) / PAGE * PAGE;
        x->seg[j].dst = dst;
        dst += x->seg[j].len;
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < n; j++)
            if (x->seg[j].file == file[i] && off[i] >= x->seg[j].off && off[i] + t[i]->nbytes <= x->seg[j].off + x->seg[j].need) {
                x->rel[i] = x->seg[j].dst + (off[i] - x->seg[j].off);
                break;
            }
    x->n_seg = n;
    x->bytes = dst;
    x->w = *w;
    x->w.gate.data = x->w.up.data = x->w.down.data = NULL;
    x->present = 1;
    d->expert_bytes += t[0]->nbytes + t[1]->nbytes + t[2]->nbytes;
    if (dst > d->slot_bytes) d->slot_bytes = dst;
    return MOE_OK;
}

moe_status moe_store_disk_finish(moe_store *s) {
    disk *d = s->self;
    int E = d->cfg.n_experts;
    d->first_moe = -1;
    for (int l = 0; l < d->cfg.n_layers; l++) {
        int have = 0;
        for (int e = 0; e < E; e++) have += d->loc[l * E + e].present;
        if (have && have != E) return moe_fail(MOE_EINTERNAL, "expert store: layer %d has %d of %d experts", l, have, E);
        if (have) {
            if (d->first_moe < 0) d->first_moe = l;
            d->layer_rank[l] = d->n_moe++;
        }
    }
    if (!d->n_moe || !d->slot_bytes) return moe_fail(MOE_EINTERNAL, "expert store: no experts");
    uint64_t n = (uint64_t)d->cfg.budget / d->slot_bytes;
    if (n < 1)
        return moe_fail(MOE_EUSAGE, "expert memory budget of %lld bytes is smaller than one expert (%llu bytes)",
                        (long long)d->cfg.budget, (unsigned long long)d->slot_bytes);
    if (n > (uint64_t)d->nk) n = (uint64_t)d->nk;
    d->n_slots = (int)n;
    s->max_pinned = (int)n;
    d->slab_bytes = (size_t)(n * d->slot_bytes);
    void *slab = mmap(NULL, d->slab_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slab == MAP_FAILED) { d->slab = NULL; return moe_fail(MOE_ENOMEM, "cannot map %zu bytes of expert slots", d->slab_bytes); }
    d->slab = slab;
    d->slots = calloc(n, sizeof *d->slots);
    d->q_demand.v = malloc(sizeof(int) * n);
    d->q_pred.v = malloc(sizeof(int) * n);
    if (!d->slots || !d->q_demand.v || !d->q_pred.v) return moe_fail(MOE_ENOMEM, "out of memory");
    d->q_demand.cap = d->q_pred.cap = (int)n;
    /* with prefetch, up to two predictions per expert a token needs in a layer (early and late guess) */
    int n_stage = d->cfg.prefetch && d->cfg.predict ? 2 * (d->cfg.top_k > 0 ? d->cfg.top_k : 1) : 0;
    if (n_stage > (int)n / 4) n_stage = (int)n / 4;
    for (uint64_t i = 0; i < n; i++) {
        d->slots[i].key = -1;
        d->slots[i].buf = d->slab + i * d->slot_bytes;
        d->slots[i].stage = (int)i >= (int)n - n_stage;
    }
    /* Expert pages that loading pulled into the page cache (readahead around the non-expert tensors) are
     * dropped: the store reads experts itself, and would otherwise compete with them for memory. */
    for (int k = 0; k < d->nk; k++)
        for (int i = 0; i < d->loc[k].n_seg; i++) {
            const seg *g = &d->loc[k].seg[i];
            posix_fadvise(d->fds[g->file], (off_t)g->off, (off_t)g->len, POSIX_FADV_DONTNEED);
        }
    if (d->cfg.prefetch) {
        d->threads = calloc((size_t)d->cfg.io_threads, sizeof *d->threads);
        if (!d->threads) return moe_fail(MOE_ENOMEM, "out of memory");
        for (int i = 0; i < d->cfg.io_threads; i++) {
            if (pthread_create(&d->threads[i], NULL, reader_main, d) != 0)
                return moe_fail(MOE_ENOMEM, "cannot start expert reader thread");
            d->n_threads++;
        }
    }
    return MOE_OK;
}

int moe_store_disk_stats(moe_store *s, moe_offload_stats *out) {
    memset(out, 0, sizeof *out);
    if (!s || s->ops != &k_disk_ops) return 0;
    disk *d = s->self;
    pthread_mutex_lock(&d->mu);
    *out = d->st;
    pthread_mutex_unlock(&d->mu);
    out->offloaded = 1;
    out->n_slots = d->n_slots;
    out->slot_bytes = d->slot_bytes;
    out->expert_bytes = d->expert_bytes;
    return 1;
}

void moe_store_disk_stats_reset(moe_store *s) {
    if (!s || s->ops != &k_disk_ops) return;
    disk *d = s->self;
    pthread_mutex_lock(&d->mu);
    memset(&d->st, 0, sizeof d->st);
    pthread_mutex_unlock(&d->mu);
}
