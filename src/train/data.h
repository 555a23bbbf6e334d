/* data.h - the training text as token ids: bytes by default (vocab 256), or the ids of a tokenizer.json.
 * The first (1 - val_fraction) of the file's bytes is the training split, the rest the held-out split
 * (with a tokenizer each part is encoded on its own, so both splits hold the same text either way). Training batches are windows at
 * random offsets drawn from a seeded stream (its state is part of the resume state); evaluation
 * batches are consecutive windows from the start of the held-out split, the same every time. */
#ifndef MOE_TRAIN_DATA_H
#define MOE_TRAIN_DATA_H
#include "moe.h"
#include <stddef.h>
#include <stdint.h>

typedef struct moe_data {
    int32_t *tok;
    size_t n, n_train;       /* tokens; the held-out split is [n_train, n) */
} moe_data;

/* Read a text file as bytes, or encode it with tokenizer (a tokenizer.json or its folder; NULL or ""
 * for bytes); every id must be below vocab, and both splits must hold a window of seq_len + 1 tokens. */
moe_status moe_data_load(const char *path, double val_fraction, int seq_len, int vocab, const char *tokenizer,
                         moe_data *d);
void moe_data_free(moe_data *d);
/* B windows of T tokens: x = tokens, y = the next tokens. */
void moe_data_batch(const moe_data *d, uint64_t *rng, int B, int T, int32_t *x, int32_t *y);
/* Held-out batch i (consecutive windows, wrapping around the split). */
void moe_data_eval_batch(const moe_data *d, int i, int B, int T, int32_t *x, int32_t *y);
#endif
