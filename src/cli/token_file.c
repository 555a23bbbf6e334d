/* token_file.c - see token_file.h. */
#include "cli/token_file.h"
#include "core/error.h"
#include "io/input_file.h"
#include "io/json.h"
#include "io/tokenize_stream.h"
#include <unistd.h>
#include <string.h>
#include <ctype.h>
#include <stdlib.h>

moe_status moe_cli_read_token_file(const char *path, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    char *buf;
    size_t len;
    MOE_TRY(moe_read_file(path, 1u << 30, &buf, &len));
    size_t cap = len / 2 + 1;
    int32_t *v = malloc(sizeof *v * cap);
    if (!v) { free(buf); return moe_fail(MOE_ENOMEM, "out of memory"); }
    int cnt = 0;
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)buf[i];
        if (isspace(ch) || ch == ',') { i++; continue; }
        if (!isdigit(ch)) {
            free(buf); free(v);
            return moe_fail(MOE_EINPUT, "%s: byte %zu: expected a token id, found '%c'", path, i, isprint(ch) ? ch : '?');
        }
        long long x = 0;
        size_t start = i;
        while (i < len && isdigit((unsigned char)buf[i])) {
            x = x * 10 + (buf[i++] - '0');
            if (x > 2147483647LL) { free(buf); free(v); return moe_fail(MOE_EINPUT, "%s: byte %zu: token id too large", path, start); }
        }
        v[cnt++] = (int32_t)x;
    }
    free(buf);
    if (!cnt) { free(v); return moe_fail(MOE_EINPUT, "%s: no token ids", path); }
    *ids = v;
    *n = cnt;
    return MOE_OK;
}

typedef struct collect { int32_t *v; size_t n, cap, max; const char *path; } collect;

static moe_status take_ids(void *user, const int32_t *ids, size_t n, int *stop) {
    collect *c = user;
    if (c->max && n > c->max - c->n) n = c->max - c->n;   /* only what the caller asked for */
    if (c->n + n > 2147483647u) return moe_fail(MOE_EINPUT, "%s: too many tokens", c->path);
    if (c->n + n > c->cap) {
        size_t cap = (c->n + n) * 2;
        int32_t *v = realloc(c->v, sizeof *v * cap);
        if (!v) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
        c->v = v;
        c->cap = cap;
    }
    if (n) memcpy(c->v + c->n, ids, sizeof *ids * n);
    c->n += n;
    *stop = c->max && c->n >= c->max;
    return MOE_OK;
}

moe_status moe_cli_tokenize_file(const char *tok_path, const char *text_path, int max_tokens, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    int fd;   /* a missing or unreadable text is reported before a missing tokenizer */
    MOE_TRY(moe_input_open(text_path, 0, &fd, NULL));
    close(fd);
    moe_tokenizer *tok = NULL;
    MOE_TRY(moe_tokenizer_load(tok_path, &tok));
    collect c = {NULL, 0, 0, max_tokens > 0 ? (size_t)max_tokens : 0, text_path};
    moe_status st = moe_tokenize_file_stream(tok, text_path, (size_t)1 << 30, NULL, take_ids, &c);
    if (st == MOE_OK && c.n == 0) st = moe_fail(MOE_EINPUT, "%s: no tokens", text_path);
    if (st != MOE_OK) free(c.v);
    else {
        *ids = c.v;
        *n = (int)c.n;
    }
    moe_tokenizer_free(tok);
    return st;
}

moe_status moe_cli_check_vocab(const char *src, const int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return moe_fail(MOE_EINPUT, "%s: token id %d at index %d is outside the vocabulary [0, %d)", src, ids[i], i, vocab);
    return MOE_OK;
}
