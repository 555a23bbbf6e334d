/* token_file.c - see token_file.h. */
#include "cli/token_file.h"
#include "core/error.h"
#include "io/json.h"
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

moe_status moe_cli_tokenize_file(const char *tok_path, const char *text_path, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    char *text;
    size_t len, cnt = 0;
    MOE_TRY(moe_read_file(text_path, 1u << 30, &text, &len));
    moe_tokenizer *tok = NULL;
    moe_status st = moe_tokenizer_load(tok_path, &tok);
    if (st == MOE_OK) st = moe_tokenizer_encode(tok, text, len, ids, &cnt);
    if (st != MOE_OK) moe_error_prefix(text_path);
    if (st == MOE_OK && cnt > 2147483647u) st = moe_fail(MOE_EINPUT, "%s: too many tokens", text_path);
    if (st == MOE_OK && cnt == 0) st = moe_fail(MOE_EINPUT, "%s: no tokens", text_path);
    if (st != MOE_OK) { free(*ids); *ids = NULL; }
    else *n = (int)cnt;
    moe_tokenizer_free(tok);
    free(text);
    return st;
}

moe_status moe_cli_check_vocab(const char *src, const int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return moe_fail(MOE_EINPUT, "%s: token id %d at index %d is outside the vocabulary [0, %d)", src, ids[i], i, vocab);
    return MOE_OK;
}
