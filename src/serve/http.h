/* http.h - the HTTP face of `moe serve` on libmicrohttpd: one thread per connection, which parses the
 * request, hands it to the engine and waits for its text while watching its socket, so a client that
 * goes away frees its slot at once. Endpoints: POST /v1/completions, POST /v1/chat/completions (JSON
 * or server-sent events), GET /v1/models, /health, /metrics (Prometheus text). */
#ifndef MOE_SERVE_HTTP_H
#define MOE_SERVE_HTTP_H
#include "serve/api.h"
#include "serve/engine.h"

typedef struct srv_http_cfg {
    const char *host;       /* address to bind (numeric IPv4), e.g. "127.0.0.1" */
    int port;               /* 0: any free port */
    size_t max_body;        /* bytes of a request body (413 beyond) */
    int max_conns;          /* open connections */
    int idle_timeout;       /* seconds a connection may stay silent */
    int verbose;            /* one log line per request on stderr */
} srv_http_cfg;

typedef struct srv_http srv_http;

moe_status srv_http_start(const srv_http_cfg *cfg, srv_engine *e, const srv_api *a, srv_http **out);
int srv_http_port(const srv_http *h);
/* Stop accepting connections (the engine is stopped next, which answers everyone waiting). */
void srv_http_quiesce(srv_http *h);
/* Wait (at most 10 s) until every answered generation request has been sent, then close everything. */
void srv_http_stop(srv_http *h);
#endif
