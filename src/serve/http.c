/* http.c - libmicrohttpd glue of `moe serve` (see http.h).
 *
 * Threading: libmicrohttpd runs each connection in its own thread, so the handler may block. A
 * generation request is parsed, submitted to the engine, and then its thread sleeps in poll() on two
 * descriptors: the request's eventfd (the engine has news) and the client's socket (POLLRDHUP: the
 * client hung up). A non-streamed request is answered when it is done; a streamed one gets its 200
 * and SSE headers once it has a slot (so that a request that never gets one can still be answered
 * 503), then the content reader blocks the same way for each new piece of text. When the socket
 * closes, the request is cancelled and the engine frees its slot before its next step.
 *
 * Limits: bodies past max_body get 413 as soon as the Content-Length or the bytes read say so; the
 * engine's queue bound gives 429, its queue timeout and shutdown 503; parse errors 400 (404 for an
 * unknown model or path, 405 for a wrong method). */
#include "serve/http.h"
#include "core/error.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EP_NONE, EP_COMPLETIONS, EP_CHAT, EP_MODELS, EP_HEALTH, EP_METRICS, EP_COUNT };
static const char *const k_ep_name[EP_COUNT] = {"other", "completions", "chat_completions", "models", "health", "metrics"};

#define MAX_CODES 16

struct srv_http {
    struct MHD_Daemon *d;
    srv_engine *e;
    const srv_api *a;
    srv_http_cfg cfg;
    long created;
    pthread_mutex_t mu;
    pthread_cond_t idle;            /* signalled when inflight drops */
    int inflight;                   /* generation requests not yet completed (response sent or dropped) */
    uint64_t next_id;
    int codes[MAX_CODES];
    uint64_t count[EP_COUNT][MAX_CODES];
    uint64_t disconnects;
};

typedef struct conn {
    int ep, post, responded, gen;
    char *body;
    size_t len, cap;
} conn;

static void count(srv_http *h, int ep, int status) {
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < MAX_CODES; i++) {
        if (h->codes[i] == 0) h->codes[i] = status;
        if (h->codes[i] == status) { h->count[ep][i]++; break; }
    }
    if (status == 499) h->disconnects++;
    pthread_mutex_unlock(&h->mu);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Queue body (malloc'ed, owned from here) with a status. */
static enum MHD_Result respond(srv_http *h, conn *k, struct MHD_Connection *c, int status, const char *type, char *body) {
    if (!body) { body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"code\":500}}\n"); status = 500; }
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 405) MHD_add_response_header(r, "Allow", k->ep == EP_COMPLETIONS || k->ep == EP_CHAT ? "POST" : "GET");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    k->responded = 1;
    count(h, k->ep, status);
    return ret;
}

static enum MHD_Result respond_error(srv_http *h, conn *k, struct MHD_Connection *c, int status, const char *msg) {
    if (h->cfg.verbose || status >= 500) fprintf(stderr, "moe serve: %d %s\n", status, msg);
    return respond(h, k, c, status, "application/json", srv_api_error(status, msg, 0));
}

/* Sleep until the request has news (0) or the client has gone (-1). */
static int wait_news(struct MHD_Connection *c, srv_req *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p[2] = {{srv_req_fd(r), POLLIN, 0}, {ci ? ci->connect_fd : -1, POLLRDHUP, 0}};
    int rc = poll(p, 2, 1000);
    if (rc > 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) return -1;
    return 0;
}

/* ---- metrics --------------------------------------------------------------------------------- */

static void put(char **b, size_t *n, size_t *cap, const char *fmt, ...) MOE_PRINTF(4, 5);
static void put(char **b, size_t *n, size_t *cap, const char *fmt, ...) {
    va_list ap;
    for (int tries = 0; tries < 2 && *b; tries++) {
        va_start(ap, fmt);
        int m = vsnprintf(*b + *n, *cap - *n, fmt, ap);
        va_end(ap);
        if (m < 0) return;
        if ((size_t)m < *cap - *n) { *n += (size_t)m; return; }
        size_t c = (*cap + (size_t)m) * 2;
        char *p = realloc(*b, c);
        if (!p) { free(*b); *b = NULL; return; }
        *b = p;
        *cap = c;
    }
}

static void put_hist(char **b, size_t *n, size_t *cap, const char *name, const char *help, const srv_hist *hs) {
    put(b, n, cap, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < SRV_HIST_N; i++)
        put(b, n, cap, "%s_bucket{le=\"%g\"} %llu\n", name, srv_hist_bounds[i], (unsigned long long)hs->count[i]);
    put(b, n, cap, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
        (unsigned long long)hs->count[SRV_HIST_N], name, hs->sum, name, (unsigned long long)hs->count[SRV_HIST_N]);
}

static char *metrics_text(srv_http *h) {
    srv_counters c;
    srv_hist ttft, total;
    srv_engine_counters(h->e, &c);
    srv_engine_hists(h->e, &ttft, &total);
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    if (!b) return NULL;
    b[0] = 0;
#define GAUGE(name, help, v) put(&b, &n, &cap, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %d\n", (v))
#define COUNTER(name, help, v) put(&b, &n, &cap, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n", (unsigned long long)(v))
    GAUGE("moe_slots", "sequences decoded together (--max-batch)", c.slots);
    GAUGE("moe_requests_running", "requests holding a slot", c.active);
    GAUGE("moe_requests_queued", "requests waiting for a slot", c.queued);
    GAUGE("moe_engine_ok", "1 unless the last forward step failed", !c.broken);
    COUNTER("moe_prompt_tokens_total", "prompt tokens evaluated", c.prompt_tokens);
    COUNTER("moe_generation_tokens_total", "tokens generated by finished requests", c.gen_tokens);
    COUNTER("moe_steps_total", "batched forward steps", c.steps);
    COUNTER("moe_step_rows_total", "token rows over all steps (rows per step = this / steps)", c.step_rows);
    COUNTER("moe_step_sequences_total", "sequences over all steps (batch size = this / steps)", c.step_seqs);
    put(&b, &n, &cap, "# HELP moe_step_seconds_total time in forward steps and sampling\n# TYPE moe_step_seconds_total counter\n"
                      "moe_step_seconds_total %.6f\n", c.step_seconds);
    put(&b, &n, &cap, "# HELP moe_requests_finished_total requests that ended, by reason\n# TYPE moe_requests_finished_total counter\n");
    put(&b, &n, &cap, "moe_requests_finished_total{reason=\"stop\"} %llu\nmoe_requests_finished_total{reason=\"length\"} %llu\n"
                      "moe_requests_finished_total{reason=\"error\"} %llu\nmoe_requests_finished_total{reason=\"cancelled\"} %llu\n"
                      "moe_requests_finished_total{reason=\"queue_timeout\"} %llu\n",
        (unsigned long long)c.finished_stop, (unsigned long long)c.finished_length, (unsigned long long)c.failed,
        (unsigned long long)c.cancelled, (unsigned long long)c.queue_timeouts);
    COUNTER("moe_requests_rejected_total", "requests refused with 429 because every slot and the queue were taken", c.rejected_full);
    put_hist(&b, &n, &cap, "moe_time_to_first_token_seconds", "from submission to the first generated token", &ttft);
    put_hist(&b, &n, &cap, "moe_request_duration_seconds", "from submission to the end of a successful generation", &total);
    put(&b, &n, &cap, "# HELP moe_http_requests_total HTTP responses by endpoint and status (499: the client left)\n"
                      "# TYPE moe_http_requests_total counter\n");
    pthread_mutex_lock(&h->mu);
    for (int ep = 0; ep < EP_COUNT; ep++)
        for (int i = 0; i < MAX_CODES && h->codes[i]; i++)
            if (h->count[ep][i])
                put(&b, &n, &cap, "moe_http_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", k_ep_name[ep], h->codes[i],
                    (unsigned long long)h->count[ep][i]);
    uint64_t disc = h->disconnects;
    pthread_mutex_unlock(&h->mu);
    COUNTER("moe_client_disconnects_total", "requests whose client closed the connection before the end", disc);
#undef GAUGE
#undef COUNTER
    return b;
}

/* ---- generation ------------------------------------------------------------------------------ */

typedef struct stream {
    srv_http *h;
    srv_engine *e;
    srv_req *r;
    srv_api_req q;
    struct MHD_Connection *c;
    char id[40];
    long created;
    int role_sent, ended;
    char *text;                     /* taken from the engine, not yet sent as an event */
    size_t text_len, text_cap;
    char *out;                      /* events ready for the socket */
    size_t out_len, out_off;
    double t0;
    srv_tok *toks;                  /* logprobs records taken, not yet sent */
    int n_toks, cap_toks;
} stream;

static int out_add(stream *s, char *ev) {
    if (!ev) return -1;
    size_t n = strlen(ev);
    char *p = realloc(s->out, s->out_len + n + 1);
    if (!p) { free(ev); return -1; }
    s->out = p;
    memcpy(s->out + s->out_len, ev, n + 1);
    s->out_len += n;
    free(ev);
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *s = cls;
    (void)pos;
    for (;;) {
        if (s->out_off < s->out_len) {
            size_t n = s->out_len - s->out_off < max ? s->out_len - s->out_off : max;
            memcpy(buf, s->out + s->out_off, n);
            s->out_off += n;
            return (ssize_t)n;
        }
        s->out_len = s->out_off = 0;
        if (s->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        const srv_api *a = s->h->a;
        if (s->q.chat && !s->role_sent) {
            s->role_sent = 1;
            if (out_add(s, srv_api_chunk(a, &s->q, s->id, s->created, "", 0, NULL, 0, NULL, 1))) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        srv_progress p;
        s->text_len = 0;
        s->n_toks = 0;
        if (srv_req_take(s->e, s->r, &s->text, &s->text_len, &s->text_cap, &p) != MOE_OK ||
            (s->q.gen.logprobs >= 0 && srv_req_take_tokens(s->e, s->r, &s->toks, &s->n_toks, &s->cap_toks) != MOE_OK))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        int bad = 0;
        if (s->text_len || s->n_toks)
            bad |= out_add(s, srv_api_chunk(a, &s->q, s->id, s->created, s->text, s->text_len, s->toks, s->n_toks, NULL, 0));
        if (p.done) {
            if (p.http_status) {
                bad |= out_add(s, srv_api_error(p.http_status, p.error, 1));
            } else {
                bad |= out_add(s, srv_api_chunk(a, &s->q, s->id, s->created, "", 0, NULL, 0, p.finish, 0));
                if (s->q.include_usage) bad |= out_add(s, srv_api_usage_chunk(a, &s->q, s->id, s->created, &p));
            }
            bad |= out_add(s, strdup("data: [DONE]\n\n"));
            s->ended = 1;
            count(s->h, s->q.chat ? EP_CHAT : EP_COMPLETIONS, p.http_status ? p.http_status : 200);
            if (s->h->cfg.verbose)
                fprintf(stderr, "moe serve: %s stream %s %d+%d tokens %.3f s\n", s->q.chat ? "chat" : "completion",
                        p.http_status ? p.error : p.finish, p.prompt_tokens, p.completion_tokens, now_s() - s->t0);
        }
        if (bad) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->out_len) continue;
        if (wait_news(s->c, s->r) < 0) {
            srv_cancel(s->e, s->r);
            count(s->h, s->q.chat ? EP_CHAT : EP_COMPLETIONS, 499);
            s->ended = 1;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream *s = cls;
    if (!s->ended) { /* the socket failed while writing */
        srv_cancel(s->e, s->r);
        count(s->h, s->q.chat ? EP_CHAT : EP_COMPLETIONS, 499);
    }
    srv_req_unref(s->r);
    srv_api_req_free(&s->q);
    free(s->text);
    free(s->out);
    free(s->toks);
    free(s);
}

static enum MHD_Result generate(srv_http *h, conn *k, struct MHD_Connection *c) {
    srv_api_req q;
    int status;
    double t0 = now_s();
    pthread_mutex_lock(&h->mu);   /* shutdown waits for this request's answer to leave (completed()) */
    h->inflight++;
    k->gen = 1;
    pthread_mutex_unlock(&h->mu);
    if (srv_api_parse(h->a, k->ep == EP_CHAT, k->body ? k->body : "", k->len, &q, &status) != MOE_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", moe_last_error());
        srv_api_req_free(&q);
        return respond_error(h, k, c, status ? status : 400, msg);
    }
    srv_req *r = srv_req_new(q.prompt, q.n_prompt, &q.gen);
    if (!r) { srv_api_req_free(&q); return respond_error(h, k, c, 500, "out of memory"); }
    int rc = srv_submit(h->e, r);
    if (rc) {
        srv_req_unref(r);
        srv_api_req_free(&q);
        return respond_error(h, k, c, rc, rc == 429 ? "every slot and the queue are taken; retry later"
                                                    : "the server is shutting down");
    }
    char id[40];
    pthread_mutex_lock(&h->mu);
    snprintf(id, sizeof id, "%s-%llx", q.chat ? "chatcmpl" : "cmpl", (unsigned long long)h->next_id++);
    pthread_mutex_unlock(&h->mu);
    long created = (long)time(NULL);
    char *text = NULL;
    size_t len = 0, cap = 0;
    srv_progress p;
    enum MHD_Result ret;
    for (;;) {   /* a stream waits for its slot only; a plain request for the end */
        if (srv_req_take(h->e, r, &text, &len, &cap, &p) != MOE_OK) { srv_cancel(h->e, r); p.done = 1; p.http_status = 500; snprintf(p.error, sizeof p.error, "out of memory"); break; }
        if (p.done || (q.stream && p.admitted)) break;
        if (wait_news(c, r) < 0) {
            srv_cancel(h->e, r);
            srv_req_unref(r);
            srv_api_req_free(&q);
            free(text);
            count(h, k->ep, 499);
            k->responded = 1;
            return MHD_NO;   /* nobody to answer: close */
        }
    }
    if (p.done && p.http_status) {
        ret = respond_error(h, k, c, p.http_status, p.error);
    } else if (!q.stream) {
        srv_tok *toks = NULL;
        int n_toks = 0, cap_toks = 0;
        if (q.gen.logprobs >= 0 && srv_req_take_tokens(h->e, r, &toks, &n_toks, &cap_toks) != MOE_OK) n_toks = 0;
        ret = respond(h, k, c, 200, "application/json", srv_api_result(h->a, &q, id, created, text, len, toks, n_toks, &p));
        free(toks);
        if (h->cfg.verbose)
            fprintf(stderr, "moe serve: %s %s %d+%d tokens %.3f s\n", q.chat ? "chat" : "completion", p.finish,
                    p.prompt_tokens, p.completion_tokens, now_s() - t0);
    } else {
        stream *s = calloc(1, sizeof *s);
        struct MHD_Response *resp = s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free) : NULL;
        if (!resp) {
            free(s);
            srv_cancel(h->e, r);
            srv_req_unref(r);
            srv_api_req_free(&q);
            free(text);
            return respond_error(h, k, c, 500, "out of memory");
        }
        *s = (stream){h, h->e, r, q, c, "", created, 0, 0, text, 0, cap, NULL, 0, 0, t0, NULL, 0, 0};
        snprintf(s->id, sizeof s->id, "%s", id);
        /* text already taken (a slot can produce some before the headers go out) goes first */
        if (len && q.chat) {
            s->role_sent = 1;
            out_add(s, srv_api_chunk(h->a, &s->q, id, created, "", 0, NULL, 0, NULL, 1));
        }
        if (len) out_add(s, srv_api_chunk(h->a, &s->q, id, created, text, len, NULL, 0, NULL, 0));
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        k->responded = 1;
        return ret;   /* the stream owns r and q now; its status is counted at its end */
    }
    srv_req_unref(r);
    srv_api_req_free(&q);
    free(text);
    return ret;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static int route(const char *url) {
    if (!strcmp(url, "/v1/completions")) return EP_COMPLETIONS;
    if (!strcmp(url, "/v1/chat/completions")) return EP_CHAT;
    if (!strcmp(url, "/v1/models")) return EP_MODELS;
    if (!strcmp(url, "/health")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    return EP_NONE;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv_http *h = cls;
    conn *k = *con_cls;
    (void)version;
    if (!k) {   /* headers are in: decide what this is before any body arrives */
        if (!(k = calloc(1, sizeof *k))) return MHD_NO;
        *con_cls = k;
        k->ep = route(url);
        k->post = !strcmp(method, "POST");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (k->post && cl && strtoull(cl, NULL, 10) > h->cfg.max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (moe serve --max-body)", h->cfg.max_body);
            return respond_error(h, k, c, 413, msg);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (k->responded) { *upload_size = 0; return MHD_YES; }
        if (k->len + *upload_size > h->cfg.max_body) {
            *upload_size = 0;
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (moe serve --max-body)", h->cfg.max_body);
            return respond_error(h, k, c, 413, msg);
        }
        if (k->len + *upload_size + 1 > k->cap) {
            size_t cap = (k->len + *upload_size + 1) * 2;
            cap = cap > h->cfg.max_body + 1 ? h->cfg.max_body + 1 : cap;
            char *p = realloc(k->body, cap);
            if (!p) return MHD_NO;
            k->body = p;
            k->cap = cap;
        }
        memcpy(k->body + k->len, upload, *upload_size);
        k->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    if (k->responded) return MHD_YES;
    int want_post = k->ep == EP_COMPLETIONS || k->ep == EP_CHAT;
    if (k->ep == EP_NONE) {
        char msg[160];
        snprintf(msg, sizeof msg, "no such endpoint: %.100s", url);
        return respond_error(h, k, c, 404, msg);
    }
    if (want_post ? !k->post : strcmp(method, "GET") && strcmp(method, "HEAD")) {
        char msg[160];
        snprintf(msg, sizeof msg, "%.100s takes %s, not %.20s", url, want_post ? "POST" : "GET", method);
        return respond_error(h, k, c, 405, msg);
    }
    switch (k->ep) {
    case EP_MODELS: return respond(h, k, c, 200, "application/json", srv_api_models(h->a, h->created));
    case EP_METRICS: return respond(h, k, c, 200, "text/plain; version=0.0.4", metrics_text(h));
    case EP_HEALTH: {
        srv_counters s;
        srv_engine_counters(h->e, &s);
        char body[256];
        snprintf(body, sizeof body, "{\"status\":\"%s\",\"slots\":%d,\"running\":%d,\"queued\":%d}\n", s.broken ? "error" : "ok",
                 s.slots, s.active, s.queued);
        return respond(h, k, c, s.broken ? 503 : 200, "application/json", strdup(body));
    }
    default: return generate(h, k, c);
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)c;
    (void)why;
    srv_http *h = cls;
    conn *k = *con_cls;
    if (!k) return;
    if (k->gen) {
        pthread_mutex_lock(&h->mu);
        h->inflight--;
        pthread_cond_broadcast(&h->idle);
        pthread_mutex_unlock(&h->mu);
    }
    free(k->body);
    free(k);
    *con_cls = NULL;
}

moe_status srv_http_start(const srv_http_cfg *cfg, srv_engine *e, const srv_api *a, srv_http **out) {
    *out = NULL;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1)
        return moe_fail(MOE_EUSAGE, "--host %.60s is not a numeric IPv4 address", cfg->host);
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return moe_fail(MOE_ENOMEM, "out of memory");
    h->e = e;
    h->a = a;
    h->cfg = *cfg;
    h->created = (long)time(NULL);
    h->next_id = ((uint64_t)time(NULL) & 0xffffff) << 24;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->idle, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    h->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)cfg->idle_timeout, MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_END);
    if (!h->d) {
        int err = errno;
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->idle);
        free(h);
        return moe_fail(MOE_EIO, "cannot listen on %s:%d (%s)", cfg->host, cfg->port, strerror(err));
    }
    *out = h;
    return MOE_OK;
}

int srv_http_port(const srv_http *h) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? (int)i->port : -1;
}

void srv_http_quiesce(srv_http *h) {
    if (h && h->d) MHD_quiesce_daemon(h->d);
}

void srv_http_stop(srv_http *h) {
    if (!h) return;
    /* the engine has answered every request: let those answers reach their clients (at most 10 s)
     * before the daemon closes the connections */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&h->mu);
    while (h->inflight > 0 && pthread_cond_timedwait(&h->idle, &h->mu, &until) == 0) {}
    pthread_mutex_unlock(&h->mu);
    if (h->d) MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->idle);
    free(h);
}
