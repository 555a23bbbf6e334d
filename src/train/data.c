/* data.c - byte-level data and batches (see data.h). */
#include "train/data.h"
#include "core/error.h"
#include "io/json.h"
#include "moe/router.h"
#include <stdlib.h>
#include <string.h>

moe_status moe_data_load(const char *path, double val_fraction, int seq_len, int vocab, moe_data *d) {
    memset(d, 0, sizeof *d);
    if (vocab < 256) return moe_fail(MOE_EUSAGE, "vocab %d is too small for byte-level tokens (256)", vocab);
    char *buf;
    size_t len;
    MOE_TRY(moe_read_file(path, (size_t)1 << 31, &buf, &len));
    size_t n_train = (size_t)((double)len * (1.0 - val_fraction));
    if (n_train < (size_t)seq_len + 1 || len - n_train < (size_t)seq_len + 1) {
        free(buf);
        return moe_fail(MOE_EINPUT, "%s: %zu bytes are too few for a training and a held-out window of %d tokens",
                        path, len, seq_len + 1);
    }
    d->tok = malloc(sizeof(int32_t) * len);
    if (!d->tok) { free(buf); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
    for (size_t i = 0; i < len; i++) d->tok[i] = (unsigned char)buf[i];
    free(buf);
    d->n = len;
    d->n_train = n_train;
    return MOE_OK;
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
