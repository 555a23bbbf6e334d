/* cmd_serve.c - `moe serve MODEL --port P`: an OpenAI-compatible HTTP server with continuous batching
 * (docs/SERVING.md). This file reads the options, loads the model (every offload option works here as
 * in `moe run`) and its tokenizer, works out the chat format and end tokens as `moe run --chat` does,
 * starts the engine (src/serve/engine.c) and the HTTP side (src/serve/http.c), and runs until SIGINT
 * or SIGTERM, when everyone still waiting gets 503 and the process exits 0. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "cli/textgen.h"
#include "core/error.h"
#include "serve/api.h"
#include "serve/engine.h"
#include "serve/http.h"
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The model's name in the API: --name, else the folder's last component. */
static void model_name(const char *dir, const char *given, char *out, size_t cap) {
    if (given) { snprintf(out, cap, "%s", given); return; }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
    const char *base = strrchr(tmp, '/');
    snprintf(out, cap, "%s", base && base[1] ? base + 1 : tmp);
}

int cmd_serve(int argc, char **argv) {
    const char *host = "127.0.0.1", *name = NULL, *tok_path = NULL;
    int port = 8080, max_batch = 8, ctx = 0, queue = 64, prefill = 256, max_tokens = 0, def_tokens = 256;
    int max_conns = 0, no_bos = 0, verbose = 0, idle = 60;
    double queue_timeout = 60, timeout = 600;
    int64_t max_body = 1 << 20;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"port", 'p', ARG_INT, &port, "P", "TCP port (default 8080; 0 picks a free one and prints it)", 0, 65535},
        {"host", 0, ARG_STR, &host, "ADDR", "IPv4 address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)", 0, 0},
        {"max-batch", 'b', ARG_INT, &max_batch, "B", "sequences decoded together, each with its own KV cache (default 8)", 1, 1024},
        {"ctx", 'c', ARG_INT, &ctx, "N", "context per sequence in tokens (default: model's, at most 4096)", 1, 1 << 24},
        {"queue", 0, ARG_INT, &queue, "N", "requests that may wait for a free sequence; more get 429 (default 64)", 0, 1 << 20},
        {"queue-timeout", 0, ARG_FLOAT, &queue_timeout, "S", "seconds a request may wait for a sequence, then 503 (default 60)", 0.001, 1e6},
        {"timeout", 0, ARG_FLOAT, &timeout, "S", "seconds of generation per request; then it ends as at max_tokens (default 600)", 0.001, 1e7},
        {"max-tokens", 0, ARG_INT, &max_tokens, "N", "the most tokens a request may ask for (default: the context)", 1, 1 << 24},
        {"default-tokens", 0, ARG_INT, &def_tokens, "N", "tokens generated when a request gives no max_tokens (default 256)", 1, 1 << 24},
        {"max-body", 0, ARG_BYTES, &max_body, "BYTES", "largest request body; larger get 413 (default 1M)", 0, 0},
        {"prefill-chunk", 0, ARG_INT, &prefill, "N", "prompt tokens evaluated per step, all requests together (default 256)", 1, 1 << 20},
        {"max-conns", 0, ARG_INT, &max_conns, "N", "open connections (default: max-batch + queue + 32)", 1, 1 << 16},
        {"idle-timeout", 0, ARG_INT, &idle, "S", "seconds a connection may stay silent before it is closed (default 60)", 1, 86400},
        {"name", 0, ARG_STR, &name, "NAME", "model name in the API (default: the folder's name)", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json to use (default: the one in MODEL)", 0, 0},
        {"no-bos", 0, ARG_FLAG, &no_bos, NULL, "do not prepend the BOS token to a completion's text prompt", 0, 0},
        {"verbose", 'v', ARG_FLAG, &verbose, NULL, "log every request on stderr", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        MOE_CLI_ROUTE_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {"serve", "MODEL [--port P] [options]",
                               "Serve a model over an OpenAI-compatible HTTP API with continuous batching.",
                               "Endpoints: POST /v1/completions, POST /v1/chat/completions (\"stream\": true for\n"
                               "server-sent events), GET /v1/models, /health, /metrics (Prometheus). Requests take\n"
                               "the sampling parameters of moe run (temperature, top_k, top_p, min_p, seed) and\n"
                               "stop strings. Every step evaluates all running requests together in one forward\n"
                               "pass; requests join and leave between steps. See docs/SERVING.md.",
                               opts, 1, 1};
    const char *pos[1];
    int npos, rc = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == MOE_ARGS_HELP ? 0 : 1;
    if (max_body <= 0) { fprintf(stderr, "moe serve: --max-body must be positive (see moe serve --help)\n"); return 1; }

    moe_model *m = NULL;
    moe_tokenizer *tok = NULL;
    srv_engine *e = NULL;
    srv_http *h = NULL;
    char *template = NULL, name_buf[256];
    moe_status st = moe_cli_load_model(pos[0], &ol, &m);
    if (!st) st = moe_tokenizer_load(tok_path ? tok_path : pos[0], &tok);
    const moe_model_info *I = m ? moe_model_get_info(m) : NULL;
    if (!st && moe_tokenizer_vocab_size(tok) > I->vocab_size)
        st = moe_fail(MOE_EINPUT, "%s: the tokenizer has %d tokens but the model only %d", tok_path ? tok_path : pos[0],
                      moe_tokenizer_vocab_size(tok), I->vocab_size);
    if (!st) st = moe_chat_template_read(tok_path ? tok_path : pos[0], &template);
    if (!st && ctx == 0) ctx = I->max_position < 4096 ? I->max_position : 4096;
    if (!st && max_tokens == 0) max_tokens = ctx;

    srv_api api;
    memset(&api, 0, sizeof api);
    if (!st) {
        const moe_tokenizer_info *TI = moe_tokenizer_get_info(tok);
        model_name(pos[0], name, name_buf, sizeof name_buf);
        api.tok = tok;
        api.model_name = name_buf;
        api.vocab = I->vocab_size;
        api.ctx = ctx;
        api.max_tokens = max_tokens;
        api.default_max_tokens = def_tokens;
        api.time_limit = timeout;
        api.chat = moe_chat_format_for(template, tok, I->model_type);
        api.bos_piece = TI->bos_id >= 0 ? moe_tokenizer_piece(tok, TI->bos_id, NULL) : NULL;
        api.bos_id = !no_bos && TI->add_bos ? TI->bos_id : -1;
        moe_eos_add_model(&api.eos, I, tok);
        api.chat_eos = api.eos;
        moe_eos_add_chat_ends(&api.chat_eos, tok);
    }
    /* the signals go to the thread that waits for them, not to the workers started below */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!st) {
        srv_engine_cfg ec = {m, tok, max_batch, ctx, queue, prefill, queue_timeout, moe_get_threads()};
        st = srv_engine_start(&ec, &e);
    }
    if (!st) {
        srv_http_cfg hc = {host, port, (size_t)max_body, max_conns ? max_conns : max_batch + queue + 32, idle, verbose};
        st = srv_http_start(&hc, e, &api, &h);
    }
    if (!st) {
        fprintf(stderr, "moe serve: %s (%s, chat format %s) on http://%s:%d/v1 - %d sequences x %d tokens, %d threads\n",
                api.model_name, I->model_type, moe_chat_name(api.chat), host, srv_http_port(h), max_batch, ctx,
                moe_get_threads());
        fflush(stderr);
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "moe serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
        srv_http_quiesce(h);
    }
    srv_engine_stop(e);   /* answers every waiting request, so the connection threads can end */
    srv_http_stop(h);
    if (!st && ol.stats) {
        srv_counters c;
        srv_engine_counters(e, &c);
        moe_cli_print_stats(stderr, m, "serve", c.prompt_tokens + c.gen_tokens, c.step_seconds);
    }
    srv_engine_free(e);
    rc = st ? moe_cli_error(st) : 0;
    free(template);
    moe_tokenizer_free(tok);
    moe_model_free(m);
    return rc;
}
