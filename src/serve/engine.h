/* engine.h - continuous batching for `moe serve`: one thread owns the model and a fixed set of slots
 * (a session with its KV cache each). Requests wait in a bounded queue for a free slot; every step
 * evaluates, in one moe_session_eval_batch call, the next token of every decoding slot and a share of
 * the prompt tokens of slots still prefilling, then samples each slot that produced logits. Requests
 * join and leave between steps. The HTTP side talks to a request only through this header: it
 * submits, waits on the request's file descriptor, takes the text produced so far, and cancels. */
#ifndef MOE_SERVE_ENGINE_H
#define MOE_SERVE_ENGINE_H
#include "cli/textgen.h"
#include "model/sampler.h"
#include "moe.h"
#include <stddef.h>
#include <stdint.h>

#define SRV_MAX_STOPS 8
#define SRV_MAX_TOP 20   /* alternatives per token in logprobs */

typedef struct srv_engine srv_engine;
typedef struct srv_req srv_req;

typedef struct srv_engine_cfg {
    moe_model *model;
    const moe_tokenizer *tok;
    int max_batch;          /* slots: sequences decoded together */
    int ctx;                /* tokens per slot */
    int queue;              /* requests that may wait for a slot */
    int prefill_chunk;      /* prompt tokens evaluated per step, all slots together */
    double queue_timeout;   /* seconds a request may wait for a slot (then 503) */
    int threads;            /* kernel threads of the engine thread */
} srv_engine_cfg;

/* What a request asks for. stops are copied. */
typedef struct srv_gen {
    int max_tokens;
    moe_sampler_params sampling;
    const char *stops[SRV_MAX_STOPS];
    int n_stops;
    moe_eos_set eos;
    double time_limit;      /* seconds from submission; generation then ends with finish "length" */
    int logprobs;           /* -1: none; else record each token's log-probability and this many alternatives */
} srv_gen;

/* A generated token with its log-probability and the most likely alternatives (logprobs). */
typedef struct srv_tok {
    int32_t id;
    float lp;
    int n_top;
    int32_t top_id[SRV_MAX_TOP];
    float top_lp[SRV_MAX_TOP];
} srv_tok;

/* A snapshot of a request's progress. */
typedef struct srv_progress {
    int admitted;           /* it has a slot (or finished) */
    int done;
    const char *finish;     /* "stop" or "length" when done without error */
    int http_status;        /* 0, or the status of a failure (503 queue timeout / shutdown, 500) */
    char error[256];
    int prompt_tokens, completion_tokens;
} srv_progress;

typedef struct srv_counters {
    uint64_t steps, step_rows, step_seqs, prompt_tokens, gen_tokens;
    uint64_t finished_stop, finished_length, failed, cancelled, queue_timeouts, rejected_full;
    double step_seconds;
    int active, queued, slots;
    int broken;             /* the last step failed */
} srv_counters;

moe_status srv_engine_start(const srv_engine_cfg *cfg, srv_engine **out);
/* Fail every queued and running request (503) and stop the thread; later submissions get 503. The
 * engine stays valid for srv_req_take / srv_cancel until srv_engine_free. */
void srv_engine_stop(srv_engine *e);
void srv_engine_free(srv_engine *e);
void srv_engine_counters(srv_engine *e, srv_counters *out);
/* Histograms of time to first token and of whole requests (seconds), for /metrics: bucket upper
 * bounds in srv_hist_bounds, counts cumulative as Prometheus wants them. */
#define SRV_HIST_N 12
extern const double srv_hist_bounds[SRV_HIST_N];
typedef struct srv_hist {
    uint64_t count[SRV_HIST_N + 1];   /* last: +Inf */
    double sum;
} srv_hist;
void srv_engine_hists(srv_engine *e, srv_hist *ttft, srv_hist *total);

/* A new request over prompt[0..n) (copied). NULL if out of memory. */
srv_req *srv_req_new(const int32_t *prompt, int n, const srv_gen *g);
/* 0 accepted; 429 when every slot and the queue are taken; 503 while stopping. */
int srv_submit(srv_engine *e, srv_req *r);
/* Readable when the request has news (text, a slot, the end); read with srv_req_take. */
int srv_req_fd(const srv_req *r);
/* Append the text produced since the last take to *buf (malloc'ed, grown) and fill *p; with toks, also
 * the tokens recorded since then (logprobs requests) to *toks (malloc'ed, grown). */
moe_status srv_req_take(srv_engine *e, srv_req *r, char **buf, size_t *len, size_t *cap, srv_progress *p);
moe_status srv_req_take_tokens(srv_engine *e, srv_req *r, srv_tok **toks, int *n, int *cap);
/* The client is gone: the slot is freed before the next step. */
void srv_cancel(srv_engine *e, srv_req *r);
void srv_req_unref(srv_req *r);
#endif
