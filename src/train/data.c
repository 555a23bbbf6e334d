/* data.c - byte-level data and batches (see data.h). */
#include "train/data.h"
#include "core/error.h"
#include "io/json.h"
#include "io/tokenize_stream.h"
#include "moe/router.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct appender { moe_data *d; size_t *cap; } appender;

static moe_status append_ids(void *user, const int32_t *ids, size_t n, int *stop) {
    appender *a = user;
    moe_data *d = a->d;
    *stop = 0;
    if (d->n + n > *a->cap) {
        size_t nc = (d->n + n) * 2;
        int32_t *p = realloc(d->tok, sizeof(int32_t) * nc);
        if (!p) return moe_fail(MOE_ENOMEM, "out of memory");
        d->tok = p;
        *a->cap = nc;
    }
    if (n) memcpy(d->tok + d->n, ids, sizeof(int32_t) * n);
    d->n += n;
    return MOE_OK;
}

/* Encode buf[0..len) with t as one text and append the ids to d->tok. The text is encoded in parts
 * (src/io/tokenize_stream.h: the same ids as one encode), so the tokenizer's working memory follows
 * a part of the file rather than all of it. */
static moe_status append_encoded(const moe_tokenizer *t, const char *path, const char *buf, size_t len, size_t offset,
                                 moe_data *d, size_t *cap) {
    appender a = {d, cap};
    moe_tokenize_stream_opts o = {0, NULL, offset};
    return moe_tokenize_buffer_stream(t, path, buf, len, &o, append_ids, &a);
}

moe_status moe_data_load(const char *path, double val_fraction, int seq_len, int vocab, const char *tokenizer,
                         moe_data *d) {
    memset(d, 0, sizeof *d);
    int bytes = !tokenizer || !*tokenizer;
    if (bytes && vocab < 256) return moe_fail(MOE_EUSAGE, "vocab %d is too small for byte-level tokens (256)", vocab);
    char *buf;
    size_t len;
    MOE_TRY(moe_read_file(path, (size_t)1 << 31, &buf, &len));
    size_t split = (size_t)((double)len * (1.0 - val_fraction));
    moe_status st = MOE_OK;
    if (bytes) {
        d->tok = malloc(sizeof(int32_t) * (len ? len : 1));
        if (!d->tok) st = moe_fail(MOE_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; !st && i < len; i++) d->tok[i] = (unsigned char)buf[i];
        d->n = len;
        d->n_train = split;
    } else {
        moe_tokenizer *t = NULL;
        size_t cap = 0;
        st = moe_tokenizer_load(tokenizer, &t);
        if (!st) {
            /* cut the split at a UTF-8 character boundary so neither part starts mid-character */
            while (split < len && ((unsigned char)buf[split] & 0xC0) == 0x80) split++;
            st = append_encoded(t, path, buf, split, 0, d, &cap);
        }
        d->n_train = d->n;
        if (!st) st = append_encoded(t, path, buf + split, len - split, split, d, &cap);
        if (st == MOE_EINPUT && t) {   /* say which tokenizer, after the file the message names */
            char msg[512];
            const char *m = moe_last_error();
            size_t pl = strlen(path);
            if (!strncmp(m, path, pl) && !strncmp(m + pl, ": ", 2)) m += pl + 2;
            snprintf(msg, sizeof msg, "%s", m);
            st = moe_fail(MOE_EINPUT, "%s (encoding with %s): %s", path, tokenizer, msg);
        }
        for (size_t i = 0; !st && i < d->n; i++)
            if (d->tok[i] < 0 || d->tok[i] >= vocab)
                st = moe_fail(MOE_EUSAGE, "%s: token id %d from %s is outside the vocabulary of %d (--vocab)", path,
                              d->tok[i], tokenizer, vocab);
        moe_tokenizer_free(t);
    }
    free(buf);
    if (!st && (d->n_train < (size_t)seq_len + 1 || d->n - d->n_train < (size_t)seq_len + 1))
        st = moe_fail(MOE_EINPUT, "%s: %zu tokens are too few for a training and a held-out window of %d tokens", path,
                      d->n, seq_len + 1);
    if (st) moe_data_free(d);
    return st;
}

void moe_data_free(moe_data *d) {
    free(d->tok);
    memset(d, 0, sizeof *d);
}

void moe_data_batch(const moe_data *d, uint64_t *rng, int B, int T, int32_t *x, int32_t *y) {
    uint64_t span = d->n_train - (size_t)T;   /* offsets 0 .. n_train - T - 1 keep y inside the split */
    for (int b = 0; b < B; b++) {
        size_t off = (size_t)(moe_rng_next(rng) % span);
        memcpy(x + (size_t)b * T, d->tok + off, sizeof(int32_t) * (size_t)T);
        memcpy(y + (size_t)b * T, d->tok + off + 1, sizeof(int32_t) * (size_t)T);
    }
}

void moe_data_eval_batch(const moe_data *d, int i, int B, int T, int32_t *x, int32_t *y) {
    size_t nval = d->n - d->n_train, windows = (nval - 1) / (size_t)T;
    for (int b = 0; b < B; b++) {
        size_t w = ((size_t)i * B + b) % windows, off = d->n_train + w * T;
        memcpy(x + (size_t)b * T, d->tok + off, sizeof(int32_t) * (size_t)T);
        memcpy(y + (size_t)b * T, d->tok + off + 1, sizeof(int32_t) * (size_t)T);
    }
}
