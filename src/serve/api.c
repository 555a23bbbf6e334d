/* api.c - OpenAI-compatible bodies (see api.h).
 *
 * Reading: the body goes through moe_json_parse (valid UTF-8, no duplicate keys, bounded nesting)
 * and the typed getters of io/json.h, so a wrong type or range names the field. Fields are checked
 * against the list each endpoint knows; fields of the OpenAI API that ask for something moe does not
 * do (n > 1, penalties, logit_bias, echo, best_of > 1, suffix) are refused rather than silently
 * ignored, unless they carry their neutral value. logprobs (at most SRV_MAX_TOP alternatives) and
 * two extensions of vLLM are supported: return_tokens_as_token_ids and ignore_eos (generate exactly
 * max_tokens tokens, for benchmarks).
 * Writing: a small string builder; text is escaped for JSON and any invalid UTF-8 (which the
 * detokenizer should never produce) becomes U+FFFD, so a response is always valid JSON. */
#include "serve/api.h"
#include "core/error.h"
#include "io/json.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STOP_BYTES 512

/* ---- a string builder ------------------------------------------------------------------------ */

typedef struct sb {
    char *p;
    size_t n, cap;
    int oom;
} sb;

static void sb_put(sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = (b->n + n + 1) * 2 + 64;
        char *p = realloc(b->p, c);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sb *b, const char *fmt, ...) MOE_PRINTF(2, 3);
static void sb_printf(sb *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal of s[0..n). */
static void sb_json(sb *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        size_t ok = moe_utf8_check((const unsigned char *)s + i, n - i);
        for (size_t j = i; j < i + ok; j++) {
            unsigned char c = (unsigned char)s[j];
            if (c == '"') sb_put(b, "\\\"", 2);
            else if (c == '\\') sb_put(b, "\\\\", 2);
            else if (c == '\n') sb_put(b, "\\n", 2);
            else if (c == '\r') sb_put(b, "\\r", 2);
            else if (c == '\t') sb_put(b, "\\t", 2);
            else if (c < 0x20 || c == 0x7f) sb_printf(b, "\\u%04x", c);
            else sb_put(b, (const char *)&c, 1);
        }
        i += ok;
        if (i < n) { sb_str(b, "\\ufffd"); i++; }
    }
    sb_put(b, "\"", 1);
}

static char *sb_done(sb *b) {
    if (b->oom) { free(b->p); return NULL; }
    if (!b->p) sb_put(b, "", 0);
    return b->oom ? NULL : b->p;
}

/* ---- reading requests ------------------------------------------------------------------------ */

static const char *const k_common[] = {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop",
                                       "stream", "stream_options", "n", "logprobs", "presence_penalty",
                                       "frequency_penalty", "logit_bias", "user", "return_tokens_as_token_ids", "ignore_eos", NULL};
static const char *const k_completion[] = {"prompt", "echo", "best_of", "suffix", NULL};
static const char *const k_chat[] = {"messages", "max_completion_tokens", "top_logprobs", NULL};

static int listed(const char *const *l, const char *k) {
    for (; *l; l++)
        if (!strcmp(*l, k)) return 1;
    return 0;
}

/* A field that must hold its neutral value (absent, null, or the given one). */
static moe_status neutral(const cJSON *root, const char *key, double zero) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return MOE_OK;
    if (cJSON_IsNumber(v) && v->valuedouble == zero) return MOE_OK;
    if (cJSON_IsObject(v) && !v->child && zero == 0) return MOE_OK;
    return moe_fail(MOE_EINPUT, "request: field \"%s\" is not supported by moe serve (leave it out)", key);
}

static moe_status read_stops(const cJSON *root, srv_gen *g) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "stop");
    g->n_stops = 0;
    if (!v || cJSON_IsNull(v)) return MOE_OK;
    const cJSON *one[1] = {v};
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    if (!cJSON_IsArray(v) && !cJSON_IsString(v))
        return moe_fail(MOE_EINPUT, "request: field \"stop\" must be a string or an array of strings");
    if (n > SRV_MAX_STOPS) return moe_fail(MOE_EINPUT, "request: field \"stop\" has %d strings, at most %d", n, SRV_MAX_STOPS);
    const cJSON *e = cJSON_IsArray(v) ? v->child : one[0];
    for (int i = 0; i < n; i++, e = e->next) {
        if (!cJSON_IsString(e)) return moe_fail(MOE_EINPUT, "request: \"stop\" entry %d must be a string", i);
        size_t len = strlen(e->valuestring);
        if (len == 0) return moe_fail(MOE_EINPUT, "request: \"stop\" entry %d is empty", i);
        if (len > MAX_STOP_BYTES) return moe_fail(MOE_EINPUT, "request: \"stop\" entry %d is longer than %d bytes", i, MAX_STOP_BYTES);
        g->stops[g->n_stops++] = e->valuestring;
    }
    return MOE_OK;
}

static moe_status encode(const srv_api *a, const char *text, int32_t bos, srv_api_req *q) {
    int32_t *ids = NULL;
    size_t n = 0;
    MOE_TRY(moe_tokenizer_encode(a->tok, text, strlen(text), &ids, &n));
    int extra = bos >= 0;
    if (n + extra > (size_t)a->ctx + 1) {   /* a bound before copying; the context check below says more */
        free(ids);
        return moe_fail(MOE_EINPUT, "request: the prompt has more than %d tokens, the context of this server", a->ctx);
    }
    q->prompt = malloc(sizeof(int32_t) * (n + 1));
    if (!q->prompt) { free(ids); return moe_fail(MOE_ENOMEM, "out of memory"); }
    if (extra) q->prompt[0] = bos;
    if (n) memcpy(q->prompt + extra, ids, sizeof(int32_t) * n);
    q->n_prompt = (int)n + extra;
    free(ids);
    return MOE_OK;
}

static moe_status read_prompt(const srv_api *a, const cJSON *root, srv_api_req *q) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p)) return moe_fail(MOE_EINPUT, "request: missing required field \"prompt\"");
    if (cJSON_IsString(p)) return encode(a, p->valuestring, a->bos_id, q);
    if (!cJSON_IsArray(p))
        return moe_fail(MOE_EINPUT, "request: field \"prompt\" must be a string or an array of token ids");
    int n = cJSON_GetArraySize(p);
    if (n > a->ctx) return moe_fail(MOE_EINPUT, "request: the prompt has %d tokens; the context is %d", n, a->ctx);
    q->prompt = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (!q->prompt) return moe_fail(MOE_ENOMEM, "out of memory");
    int i = 0;
    for (const cJSON *e = p->child; e; e = e->next, i++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!cJSON_IsNumber(e) || v != (double)(int32_t)v || v < 0 || v >= a->vocab)
            return moe_fail(MOE_EINPUT, "request: \"prompt\" entry %d is not a token id in [0, %d) (only one prompt per request)",
                            i, a->vocab);
        q->prompt[i] = (int32_t)v;
    }
    q->n_prompt = n;
    return MOE_OK;
}

/* Text of a message's content: a string, or an array of {"type": "text", "text": ...} parts. */
static moe_status content_text(const cJSON *m, int i, char **out) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    *out = NULL;
    if (cJSON_IsString(c)) return (*out = strdup(c->valuestring)) ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
    if (!cJSON_IsArray(c))
        return moe_fail(MOE_EINPUT, "request: messages[%d].content must be a string or an array of text parts", i);
    sb b = {0};
    int j = 0;
    for (const cJSON *p = c->child; p; p = p->next, j++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type"), *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            free(b.p);
            return moe_fail(MOE_EINPUT, "request: messages[%d].content[%d] is not a {\"type\": \"text\", \"text\": ...} part", i, j);
        }
        sb_str(&b, text->valuestring);
    }
    *out = sb_done(&b);
    return *out ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
}

/* messages -> one prompt text in the model's chat format: an optional system message first, then
 * user and assistant turns alternating, ending with a user turn. */
static moe_status read_messages(const srv_api *a, const cJSON *root, srv_api_req *q) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!ms || cJSON_IsNull(ms)) return moe_fail(MOE_EINPUT, "request: missing required field \"messages\"");
    if (!cJSON_IsArray(ms) || !ms->child) return moe_fail(MOE_EINPUT, "request: field \"messages\" must be a non-empty array");
    sb b = {0};
    char *system = NULL;
    moe_status st = MOE_OK;
    int i = 0, first = 1, want_user = 1;
    for (const cJSON *m = ms->child; m && st == MOE_OK; m = m->next, i++) {
        const char *role = NULL;
        char *text = NULL;
        if (!cJSON_IsObject(m)) { st = moe_fail(MOE_EINPUT, "request: messages[%d] must be an object", i); break; }
        for (const cJSON *k = m->child; k && st == MOE_OK; k = k->next)
            if (strcmp(k->string, "role") && strcmp(k->string, "content") && strcmp(k->string, "name"))
                st = moe_fail(MOE_EINPUT, "request: messages[%d] has an unknown field \"%.40s\"", i, k->string);
        char where[48];
        snprintf(where, sizeof where, "request: messages[%d]", i);
        if (st == MOE_OK) st = moe_json_str(where, m, "role", MOE_JSON_REQUIRED, NULL, &role);
        if (st == MOE_OK) st = content_text(m, i, &text);
        if (st != MOE_OK) { free(text); break; }
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            if (i != 0) st = moe_fail(MOE_EINPUT, "request: messages[%d]: a system message may only come first", i);
            system = text;
            continue;
        }
        if (strcmp(role, "user") && strcmp(role, "assistant")) {
            st = moe_fail(MOE_EINPUT, "request: messages[%d].role \"%.40s\" is not system, user or assistant", i, role);
        } else if ((strcmp(role, "user") == 0) != want_user) {
            st = moe_fail(MOE_EINPUT, "request: messages[%d]: user and assistant messages must alternate, starting with user", i);
        } else if (want_user) {
            char *turn = moe_chat_turn(a->chat, a->bos_piece, system, text, first);
            if (!turn) st = moe_fail(MOE_ENOMEM, "out of memory");
            else sb_str(&b, turn);
            free(turn);
            first = 0;
        } else {
            sb_str(&b, text);
            sb_str(&b, moe_chat_end_of_reply(a->chat));
        }
        want_user = !want_user;
        free(text);
    }
    if (st == MOE_OK && want_user) st = moe_fail(MOE_EINPUT, "request: the last message must be the user's");
    char *prompt = sb_done(&b);
    if (st == MOE_OK && !prompt) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (st == MOE_OK) st = encode(a, prompt, -1, q);
    free(prompt);
    free(system);
    return st;
}

moe_status srv_api_parse(const srv_api *a, int chat, const char *body, size_t len, srv_api_req *q, int *status) {
    memset(q, 0, sizeof *q);
    q->chat = chat;
    *status = 400;
    moe_status st = moe_json_parse("request", body, len, &q->root);
    if (st != MOE_OK) return st;
    const cJSON *root = q->root;
    if (!cJSON_IsObject(root)) return moe_fail(MOE_EINPUT, "request: the body must be a JSON object");
    for (const cJSON *k = root->child; k; k = k->next)
        if (!listed(k_common, k->string) && !listed(chat ? k_chat : k_completion, k->string))
            return moe_fail(MOE_EINPUT, "request: unknown field \"%.60s\" for %s", k->string,
                            chat ? "/v1/chat/completions" : "/v1/completions");
    const char *model;
    MOE_TRY(moe_json_str("request", root, "model", MOE_JSON_OPTIONAL, NULL, &model));
    if (model && strcmp(model, a->model_name)) {
        *status = 404;
        return moe_fail(MOE_EINPUT, "request: model \"%.80s\" is not served here (this server has \"%s\")", model, a->model_name);
    }
    int n, echo, best_of;
    MOE_TRY(moe_json_int32("request", root, "n", MOE_JSON_OPTIONAL, 1, 1, 1, &n));
    /* logprobs: completions take the number of alternatives, chat a flag and top_logprobs */
    q->gen.logprobs = -1;
    if (chat) {
        int want, top;
        MOE_TRY(moe_json_bool("request", root, "logprobs", MOE_JSON_OPTIONAL, 0, &want));
        MOE_TRY(moe_json_int32("request", root, "top_logprobs", MOE_JSON_OPTIONAL, 0, 0, SRV_MAX_TOP, &top));
        if (moe_json_has(root, "top_logprobs") && !want)
            return moe_fail(MOE_EINPUT, "request: \"top_logprobs\" needs \"logprobs\": true");
        if (want) q->gen.logprobs = top;
    } else {
        MOE_TRY(moe_json_int32("request", root, "logprobs", MOE_JSON_OPTIONAL, -1, 0, SRV_MAX_TOP, &q->gen.logprobs));
    }
    MOE_TRY(moe_json_bool("request", root, "return_tokens_as_token_ids", MOE_JSON_OPTIONAL, 0, &q->tokens_as_ids));
    MOE_TRY(neutral(root, "presence_penalty", 0));
    MOE_TRY(neutral(root, "frequency_penalty", 0));
    MOE_TRY(neutral(root, "logit_bias", 0));
    MOE_TRY(moe_json_bool("request", root, "echo", MOE_JSON_OPTIONAL, 0, &echo));
    if (echo) return moe_fail(MOE_EINPUT, "request: field \"echo\" is not supported by moe serve (leave it out)");
    MOE_TRY(moe_json_int32("request", root, "best_of", MOE_JSON_OPTIONAL, 1, 1, 1, &best_of));
    if (moe_json_has(root, "suffix")) return moe_fail(MOE_EINPUT, "request: field \"suffix\" is not supported by moe serve");
    const char *user;
    MOE_TRY(moe_json_str("request", root, "user", MOE_JSON_OPTIONAL, NULL, &user));

    srv_gen *g = &q->gen;
    double temp, top_p, min_p;
    int top_k;
    int64_t seed;
    MOE_TRY(moe_json_num("request", root, "temperature", MOE_JSON_OPTIONAL, 0.8, 0, 100, &temp));
    MOE_TRY(moe_json_num("request", root, "top_p", MOE_JSON_OPTIONAL, 0.95, 0, 1, &top_p));
    MOE_TRY(moe_json_int32("request", root, "top_k", MOE_JSON_OPTIONAL, 40, 0, 1 << 24, &top_k));
    MOE_TRY(moe_json_num("request", root, "min_p", MOE_JSON_OPTIONAL, 0.05, 0, 1, &min_p));
    MOE_TRY(moe_json_int("request", root, "seed", MOE_JSON_OPTIONAL, -1, -1, (int64_t)1 << 53, &seed));
    if (seed < 0) { /* like moe run: from the clock */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (int64_t)(((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20)) & 0x7fffffff);
    }
    g->sampling = (moe_sampler_params){temp, top_k, top_p, min_p, (uint64_t)seed};
    MOE_TRY(read_stops(root, g));
    MOE_TRY(moe_json_bool("request", root, "stream", MOE_JSON_OPTIONAL, 0, &q->stream));
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!q->stream) return moe_fail(MOE_EINPUT, "request: \"stream_options\" needs \"stream\": true");
        if (!cJSON_IsObject(so)) return moe_fail(MOE_EINPUT, "request: field \"stream_options\" must be an object");
        for (const cJSON *k = so->child; k; k = k->next)
            if (strcmp(k->string, "include_usage"))
                return moe_fail(MOE_EINPUT, "request: stream_options has an unknown field \"%.40s\"", k->string);
        MOE_TRY(moe_json_bool("request: stream_options", so, "include_usage", MOE_JSON_OPTIONAL, 0, &q->include_usage));
    }
    MOE_TRY(chat ? read_messages(a, root, q) : read_prompt(a, root, q));
    if (q->n_prompt == 0) return moe_fail(MOE_EINPUT, "request: the prompt is empty (and the tokenizer adds no BOS token)");
    if (q->n_prompt >= a->ctx)
        return moe_fail(MOE_EINPUT, "request: the prompt has %d tokens; the context is %d (moe serve --ctx)", q->n_prompt, a->ctx);
    int left = a->ctx - q->n_prompt, def = a->default_max_tokens < left ? a->default_max_tokens : left;
    const char *mt_key = chat && moe_json_has(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (chat && moe_json_has(root, "max_completion_tokens") && moe_json_has(root, "max_tokens"))
        return moe_fail(MOE_EINPUT, "request: give \"max_tokens\" or \"max_completion_tokens\", not both");
    MOE_TRY(moe_json_int32("request", root, mt_key, MOE_JSON_OPTIONAL, def, 1, a->max_tokens, &g->max_tokens));
    if (g->max_tokens > left)
        return moe_fail(MOE_EINPUT, "request: the prompt (%d tokens) and %s (%d) exceed the context of %d tokens",
                        q->n_prompt, mt_key, g->max_tokens, a->ctx);
    int ignore_eos;
    MOE_TRY(moe_json_bool("request", root, "ignore_eos", MOE_JSON_OPTIONAL, 0, &ignore_eos));
    if (!ignore_eos) g->eos = chat ? a->chat_eos : a->eos;
    g->time_limit = a->time_limit;
    *status = 0;
    return MOE_OK;
}

void srv_api_req_free(srv_api_req *q) {
    free(q->prompt);
    cJSON_Delete(q->root);
    memset(q, 0, sizeof *q);
}

/* ---- writing responses ----------------------------------------------------------------------- */

static void head(sb *b, const srv_api *a, const srv_api_req *q, const char *id, long created, int chunk) {
    sb_str(b, "{\"id\":");
    sb_json(b, id, strlen(id));
    sb_printf(b, ",\"object\":\"%s\",\"created\":%ld,\"model\":",
              q->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion", created);
    sb_json(b, a->model_name, strlen(a->model_name));
}

static void usage(sb *b, const srv_progress *p) {
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", p->prompt_tokens,
              p->completion_tokens, p->prompt_tokens + p->completion_tokens);
}

static void finish(sb *b, const char *f) {
    if (f) sb_printf(b, "\"finish_reason\":\"%s\"", f);
    else sb_str(b, "\"finish_reason\":null");
}

/* A token as text: its decode (special tokens included), or "token_id:N". */
static void tok_text(const srv_api *a, const srv_api_req *q, int32_t id, sb *b) {
    char num[32];
    if (q->tokens_as_ids) {
        snprintf(num, sizeof num, "token_id:%d", id);
        sb_json(b, num, strlen(num));
        return;
    }
    char *t = NULL;
    size_t n = 0;
    if (moe_tokenizer_decode(a->tok, &id, 1, 0, &t, &n) != MOE_OK) n = 0;
    sb_json(b, t ? t : "", n);
    free(t);
}

static void tok_bytes(const srv_api *a, const srv_api_req *q, int32_t id, sb *b) {
    char *t = NULL, num[32];
    size_t n = 0;
    if (q->tokens_as_ids) n = (size_t)snprintf(num, sizeof num, "token_id:%d", id);
    else if (moe_tokenizer_decode(a->tok, &id, 1, 0, &t, &n) != MOE_OK) n = 0;
    const char *s = q->tokens_as_ids ? num : t ? t : "";
    sb_str(b, "[");
    for (size_t i = 0; i < n; i++) sb_printf(b, i ? ",%u" : "%u", (unsigned char)s[i]);
    sb_str(b, "]");
    free(t);
}

/* "logprobs": ... in the completions layout (tokens, token_logprobs, top_logprobs, text_offset) or the
 * chat one (content: [{token, logprob, bytes, top_logprobs}]). */
static void logprobs(sb *b, const srv_api *a, const srv_api_req *q, const srv_tok *t, int n) {
    if (q->gen.logprobs < 0) { sb_str(b, "\"logprobs\":null,"); return; }
    if (q->chat) {
        sb_str(b, "\"logprobs\":{\"content\":[");
        for (int i = 0; i < n; i++) {
            sb_str(b, i ? ",{\"token\":" : "{\"token\":");
            tok_text(a, q, t[i].id, b);
            sb_printf(b, ",\"logprob\":%.9g,\"bytes\":", t[i].lp);
            tok_bytes(a, q, t[i].id, b);
            sb_str(b, ",\"top_logprobs\":[");
            for (int k = 0; k < t[i].n_top; k++) {
                sb_str(b, k ? ",{\"token\":" : "{\"token\":");
                tok_text(a, q, t[i].top_id[k], b);
                sb_printf(b, ",\"logprob\":%.9g,\"bytes\":", t[i].top_lp[k]);
                tok_bytes(a, q, t[i].top_id[k], b);
                sb_str(b, "}");
            }
            sb_str(b, "]}");
        }
        sb_str(b, "],\"refusal\":null},");
        return;
    }
    sb_str(b, "\"logprobs\":{\"tokens\":[");
    for (int i = 0; i < n; i++) { if (i) sb_str(b, ","); tok_text(a, q, t[i].id, b); }
    sb_str(b, "],\"token_logprobs\":[");
    for (int i = 0; i < n; i++) sb_printf(b, i ? ",%.9g" : "%.9g", t[i].lp);
    sb_str(b, "],\"top_logprobs\":[");
    for (int i = 0; i < n; i++) {
        sb_str(b, i ? ",{" : "{");
        for (int k = 0; k < t[i].n_top; k++) {
            if (k) sb_str(b, ",");
            tok_text(a, q, t[i].top_id[k], b);
            sb_printf(b, ":%.9g", t[i].top_lp[k]);
        }
        sb_str(b, "}");
    }
    sb_str(b, "]},");
}

char *srv_api_result(const srv_api *a, const srv_api_req *q, const char *id, long created, const char *text,
                     size_t len, const srv_tok *toks, int n_toks, const srv_progress *p) {
    sb b = {0};
    head(&b, a, q, id, created, 0);
    sb_str(&b, ",\"choices\":[{\"index\":0,");
    if (q->chat) {
        sb_str(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json(&b, text, len);
        sb_str(&b, "},");
    } else {
        sb_str(&b, "\"text\":");
        sb_json(&b, text, len);
        sb_str(&b, ",");
    }
    logprobs(&b, a, q, toks, n_toks);
    finish(&b, p->finish);
    sb_str(&b, "}],");
    usage(&b, p);
    sb_str(&b, "}");
    return sb_done(&b);
}

char *srv_api_chunk(const srv_api *a, const srv_api_req *q, const char *id, long created, const char *text, size_t len,
                    const srv_tok *toks, int n_toks, const char *fin, int role) {
    sb b = {0};
    sb_str(&b, "data: ");
    head(&b, a, q, id, created, 1);
    sb_str(&b, ",\"choices\":[{\"index\":0,");
    if (q->chat) {
        sb_str(&b, "\"delta\":{");
        if (role) sb_str(&b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (len || !fin) { sb_str(&b, "\"content\":"); sb_json(&b, text, len); }
        sb_str(&b, "},");
    } else {
        sb_str(&b, "\"text\":");
        sb_json(&b, text, len);
        sb_str(&b, ",");
    }
    if (n_toks) logprobs(&b, a, q, toks, n_toks);
    else sb_str(&b, "\"logprobs\":null,");
    finish(&b, fin);
    sb_str(&b, "}]}\n\n");
    return sb_done(&b);
}

char *srv_api_usage_chunk(const srv_api *a, const srv_api_req *q, const char *id, long created, const srv_progress *p) {
    sb b = {0};
    sb_str(&b, "data: ");
    head(&b, a, q, id, created, 1);
    sb_str(&b, ",\"choices\":[],");
    usage(&b, p);
    sb_str(&b, "}\n\n");
    return sb_done(&b);
}

char *srv_api_error(int status, const char *msg, int sse) {
    const char *type = status == 429 || status == 503 ? "server_overloaded"
                       : status >= 500             ? "server_error"
                       : status == 404             ? "not_found_error"
                                                   : "invalid_request_error";
    sb b = {0};
    if (sse) sb_str(&b, "data: ");
    sb_str(&b, "{\"error\":{\"message\":");
    sb_json(&b, msg, strlen(msg));
    sb_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":%d}}", type, status);
    sb_str(&b, sse ? "\n\n" : "\n");
    return sb_done(&b);
}

char *srv_api_models(const srv_api *a, long created) {
    sb b = {0};
    sb_str(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sb_json(&b, a->model_name, strlen(a->model_name));
    sb_printf(&b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"moe\",\"context_length\":%d}]}\n", created, a->ctx);
    return sb_done(&b);
}
