/* tokenize_stream.h - encode a long text in parts, with exactly the ids one encode of the whole text
 * gives, so that memory follows a part instead of the file and a reader that needs only the first
 * N tokens (moe eval --max-tokens) encodes only what it needs.
 *
 * A part ends at a safe boundary: a position after a newline and before a printable ASCII
 * character, where the pipeline of a typical tokenizer starts a new word whatever came before
 * (normalizers act per character there, split patterns end their whitespace match at the newline,
 * BPE merges never cross a word). That holds for byte-level BPE tokenizers (Qwen, DeepSeek,
 * gpt-oss, GPT-2 and the checkpoints moe train writes) but not for every tokenizer.json, so every
 * cut is verified before it is used: a window of text around it is encoded whole and in its two
 * halves, and the cut is taken only if the ids agree. Where no candidate verifies (SentencePiece-
 * style files whose normalizer prepends a marker to every piece, a text without newlines), the
 * part grows, up to the whole text, which is then one encode as before. */
#ifndef MOE_IO_TOKENIZE_STREAM_H
#define MOE_IO_TOKENIZE_STREAM_H
#include <stddef.h>
#include <stdint.h>
#include "moe.h"

/* Receives the ids of each part in order; sets *stop to end the stream early. */
typedef moe_status (*moe_tokens_fn)(void *user, const int32_t *ids, size_t n, int *stop);

typedef struct moe_tokenize_stream_opts {
    size_t part;          /* bytes per part before a cut is looked for (0: 1 MiB) */
    size_t *cuts;         /* optional: number of verified cuts taken */
    uint64_t offset;      /* where the text starts in its file, for messages (a part of a file) */
} moe_tokenize_stream_opts;

/* The text of path (at most max_bytes), read in blocks. Errors name path (bad UTF-8 with its byte
 * offset in the file). */
moe_status moe_tokenize_file_stream(const moe_tokenizer *t, const char *path, size_t max_bytes,
                                    const moe_tokenize_stream_opts *o, moe_tokens_fn fn, void *user);
/* A text in memory; name is used in messages. */
moe_status moe_tokenize_buffer_stream(const moe_tokenizer *t, const char *name, const char *text, size_t len,
                                      const moe_tokenize_stream_opts *o, moe_tokens_fn fn, void *user);
#endif
