/* fuzz_serve_request.c - libFuzzer harness for the request bodies of `moe serve` (src/serve/api.c).
 * The first byte picks the endpoint (even: /v1/completions, odd: /v1/chat/completions), the rest is the
 * body. A body is either refused with an HTTP status of 400 or 404 and one message that starts with
 * "request: ", or accepted with a prompt of 1..ctx-1 tokens inside the vocabulary, 1 <= max_tokens
 * <= ctx - prompt, at most SRV_MAX_STOPS non-empty stop strings and sampling parameters in range;
 * then the response, a stream chunk, the usage chunk and an error body written for it (with the body's
 * own bytes as generated text, valid UTF-8 or not) must all be strict JSON. */
#include "fuzz_common.h"
#include "io/json.h"
#include "serve/api.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static moe_tokenizer *g_tok;
static srv_api g_api;

/* A byte-level BPE tokenizer over the 256 bytes with two special tokens (BOS 256, EOS 257). */
static void setup(void) {
    char path[] = "/tmp/fuzz_serve_tok_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) abort();
    fputs("{\"version\":\"1.0\",\"added_tokens\":[{\"id\":256,\"content\":\"<s>\",\"special\":true},"
          "{\"id\":257,\"content\":\"</s>\",\"special\":true}],\"normalizer\":null,"
          "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
          "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{", f);
    /* the byte-level alphabet: bytes 33-126, 161-172, 174-255 map to themselves, the rest to U+0100.. */
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = keep ? (unsigned)b : 256u + (unsigned)n++;
        char u[8];
        if (cp < 0x80) { u[0] = (char)cp; u[1] = 0; }
        else { u[0] = (char)(0xc0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3f)); u[2] = 0; }
        if (cp == '"' || cp == '\\') fprintf(f, "%s\"\\%s\":%d", b ? "," : "", u, b);
        else fprintf(f, "%s\"%s\":%d", b ? "," : "", u, b);
    }
    fputs("},\"merges\":[]}}", f);
    fclose(f);
    if (moe_tokenizer_load(path, &g_tok) != MOE_OK) { fprintf(stderr, "%s\n", moe_last_error()); abort(); }
    unlink(path);
    g_api.tok = g_tok;
    g_api.model_name = "fuzz";
    g_api.vocab = 300;
    g_api.ctx = 64;
    g_api.max_tokens = 64;
    g_api.default_max_tokens = 16;
    g_api.time_limit = 10;
    g_api.chat = MOE_CHAT_CHATML;
    g_api.bos_piece = "<s>";
    g_api.bos_id = 256;
    moe_eos_add(&g_api.eos, 257);
    g_api.chat_eos = g_api.eos;
}

static void must_be_json(char *s, int sse) {
    FUZZ_ASSERT(s != NULL);
    const char *body = s;
    size_t n = strlen(s);
    if (sse) {
        FUZZ_ASSERT(n > 8 && !strncmp(s, "data: ", 6) && !strcmp(s + n - 2, "\n\n"));
        body += 6;
        n -= 8;
    }
    cJSON *root = NULL;
    if (moe_json_parse("response", body, n, &root) != MOE_OK) {
        fprintf(stderr, "not JSON (%s): %s\n", moe_last_error(), s);
        abort();
    }
    cJSON_Delete(root);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) setup();
    if (size < 1) return 0;
    int chat = data[0] & 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    srv_api_req q;
    int status = 0;
    if (srv_api_parse(&g_api, chat, body, len, &q, &status) != MOE_OK) {
        FUZZ_ASSERT(status == 400 || status == 404);
        fuzz_check_message("request");
        srv_api_req_free(&q);
        return 0;
    }
    FUZZ_ASSERT(status == 0);
    FUZZ_ASSERT(q.n_prompt >= 1 && q.n_prompt < g_api.ctx);
    for (int i = 0; i < q.n_prompt; i++) FUZZ_ASSERT(q.prompt[i] >= 0 && q.prompt[i] < g_api.vocab);
    FUZZ_ASSERT(q.gen.max_tokens >= 1 && q.gen.max_tokens <= g_api.ctx - q.n_prompt);
    FUZZ_ASSERT(q.gen.n_stops >= 0 && q.gen.n_stops <= SRV_MAX_STOPS);
    for (int i = 0; i < q.gen.n_stops; i++) FUZZ_ASSERT(q.gen.stops[i] && q.gen.stops[i][0]);
    const moe_sampler_params *sp = &q.gen.sampling;
    FUZZ_ASSERT(sp->temperature >= 0 && sp->temperature <= 100 && sp->top_p >= 0 && sp->top_p <= 1 && sp->min_p >= 0 &&
                sp->min_p <= 1 && sp->top_k >= 0);
    FUZZ_ASSERT(q.gen.logprobs >= -1 && q.gen.logprobs <= SRV_MAX_TOP);
    /* responses carrying the raw body as text (any bytes), with token records of the prompt */
    srv_progress p = {1, 1, "stop", 0, "", q.n_prompt, 3};
    srv_tok toks[2] = {{q.prompt[0], -0.5f, 1, {q.prompt[q.n_prompt - 1]}, {-0.5f}}, {257, -1.0f, 0, {0}, {0}}};
    must_be_json(srv_api_result(&g_api, &q, "cmpl-1", 1, body, len, toks, 2, &p), 0);
    must_be_json(srv_api_chunk(&g_api, &q, "cmpl-1", 1, body, len, toks, 2, NULL, 0), 1);
    must_be_json(srv_api_chunk(&g_api, &q, "cmpl-1", 1, "", 0, NULL, 0, "length", 0), 1);
    must_be_json(srv_api_chunk(&g_api, &q, "cmpl-1", 1, "", 0, NULL, 0, NULL, 1), 1);
    must_be_json(srv_api_usage_chunk(&g_api, &q, "cmpl-1", 1, &p), 1);
    char msg[200];
    snprintf(msg, sizeof msg, "%.*s", (int)(len < 150 ? len : 150), body);
    must_be_json(srv_api_error(400, msg, 0), 0);
    must_be_json(srv_api_error(503, msg, 1), 1);
    srv_api_req_free(&q);
    return 0;
}
