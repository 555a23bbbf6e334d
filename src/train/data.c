/* data.c - byte-level data and batches (see data.h). */
#include "train/data.h"
#include "core/error.h"
#include "io/json.h"
#include "moe/router.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Encode buf[0..len) with t and append the ids to d->tok. */
static moe_status append_encoded(const moe_tokenizer *t, const char *buf, size_t len, moe_data *d, size_t *cap) {
    int32_t *ids;
    size_t n;
    MOE_TRY(moe_tokenizer_encode(t, buf, len, &ids, &n));
    if (d->n + n > *cap) {
        size_t nc = (d->n + n) * 2;
        int32_t *p = realloc(d->tok, sizeof(int32_t) * nc);
        if (!p) { free(ids); return moe_fail(MOE_ENOMEM, "out of memory"); }
        d->tok = p;
        *cap = nc;
    }
    if (n) memcpy(d->tok + d->n, ids, sizeof(int32_t) * n);
    d->n += n;
    free(ids);
    return MOE_OK;
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
            st = append_encoded(t, buf, split, d, &cap);
        }
        d->n_train = d->n;
        if (!st) st = append_encoded(t, buf + split, len - split, d, &cap);
        if (st == MOE_EINPUT && t) {   /* the tokenizer names only "text": say which file */
            char msg[512];
            snprintf(msg, sizeof msg, "%s", moe_last_error());
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
