/* api.h - the OpenAI-compatible request and response bodies of `moe serve` (docs/SERVING.md):
 * /v1/completions and /v1/chat/completions requests are read with the strict JSON reader (duplicate
 * keys, bad UTF-8 and unknown fields are refused) and turned into token ids and generation
 * parameters; responses, stream chunks, errors and the model list are written here. Every refusal
 * comes with the HTTP status to send and a one-line message. */
#ifndef MOE_SERVE_API_H
#define MOE_SERVE_API_H
#include "cli/textgen.h"
#include "serve/engine.h"
#include <cjson/cJSON.h>

typedef struct srv_api {
    const moe_tokenizer *tok;
    const char *model_name;
    int vocab;                  /* the model's */
    int ctx;                    /* tokens per slot */
    int max_tokens;             /* the most a request may ask for */
    int default_max_tokens;     /* when it does not ask */
    double time_limit;          /* seconds per request */
    moe_chat_format chat;
    const char *bos_piece;      /* BOS as text for chat formats that start with it, or NULL */
    int32_t bos_id;             /* prepended to a completion's text prompt when the tokenizer adds one, or -1 */
    moe_eos_set eos, chat_eos;
} srv_api;

typedef struct srv_api_req {
    int chat, stream, include_usage;
    int tokens_as_ids;          /* logprobs name tokens "token_id:N" (vLLM's return_tokens_as_token_ids) */
    int32_t *prompt;            /* malloc'ed */
    int n_prompt;
    srv_gen gen;                /* stops point into root */
    cJSON *root;
} srv_api_req;

/* Parse a request body. On failure *status is the HTTP status (400, 404) and moe_last_error() the
 * message. */
moe_status srv_api_parse(const srv_api *a, int chat, const char *body, size_t len, srv_api_req *out, int *status);
void srv_api_req_free(srv_api_req *q);

/* The whole response of a finished request (NUL-terminated, malloc'ed; NULL if out of memory). */
char *srv_api_result(const srv_api *a, const srv_api_req *q, const char *id, long created, const char *text,
                     size_t len, const srv_tok *toks, int n_toks, const srv_progress *p);
/* One server-sent event of a stream: text (may be empty) and, at the end, the finish reason.
 * role != 0 opens a chat stream with the assistant's role. */
char *srv_api_chunk(const srv_api *a, const srv_api_req *q, const char *id, long created, const char *text, size_t len,
                    const srv_tok *toks, int n_toks, const char *finish, int role);
/* The usage event of a stream that asked for it (stream_options.include_usage). */
char *srv_api_usage_chunk(const srv_api *a, const srv_api_req *q, const char *id, long created, const srv_progress *p);
/* {"error": {"message": ..., "type": ..., "code": status}}; with sse != 0 as one event. */
char *srv_api_error(int status, const char *msg, int sse);
char *srv_api_models(const srv_api *a, long created);
#endif
