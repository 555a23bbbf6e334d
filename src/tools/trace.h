/* trace.h - routing traces: what `moe trace` records and `moe stats` reads.
 *
 * A trace holds, for every token of a text and every MoE layer, the experts the router chose, their
 * combine weights and the entropy of the router's score distribution. It is written as one compact
 * little-endian binary file (trace.bin) and can be exported as CSV.
 *
 * trace.bin, version 1:
 *   header, 64 bytes: "MOETRACE", u32 version (1), u32 header bytes (64), u32 transformer layers,
 *     u32 MoE layers traced (L), u32 experts per layer (E), u32 slots per token and layer (K),
 *     u64 tokens (T), u32 vocabulary size (0: unknown), u32 token pieces (P), u32 model name bytes,
 *     u32 flags (0), u64 reserved (0)
 *   the model name (UTF-8, not NUL-terminated), zero-padded to a multiple of 4 bytes
 *   L x u32: the transformer layer index of each traced MoE layer, strictly ascending
 *   T records: i32 token id, i32 position in its window, f32 entropy[L], f32 weight[L*K],
 *     u16 expert[L*K], zero padding to a multiple of 4 bytes. Slot j of layer l is entry l*K + j;
 *     unused slots (routers with fewer experts for this token) hold expert 0xFFFF and weight 0.
 *     entropy is -sum p log p (nats) of the router's scores normalised to sum 1, or -1 if the router
 *     reported none.
 *   P pieces: i32 token id (strictly ascending, below the vocabulary), u32 length (<= 1024), the
 *     token's text (its decode), for the report's tables of preferred tokens.
 * Nothing may follow. The reader is a parser of untrusted input: every count is bounded, every size
 * is computed without overflow and must match the file exactly, every value is range-checked, and a
 * failure is one message naming the file and the problem. */
#ifndef MOE_TOOLS_TRACE_H
#define MOE_TOOLS_TRACE_H
#include <stdint.h>
#include <stdio.h>
#include "io/atomic_file.h"
#include "moe.h"

#define MOE_TRACE_MAGIC "MOETRACE"
#define MOE_TRACE_VERSION 1
#define MOE_TRACE_NO_EXPERT 0xFFFFu
#define MOE_TRACE_MAX_EXPERTS 65535
#define MOE_TRACE_MAX_SLOTS 4096
#define MOE_TRACE_MAX_PIECE 1024

typedef struct moe_trace {
    uint32_t n_layers, n_moe, n_experts, k, vocab;
    uint64_t n_tokens;
    char *model;              /* NUL-terminated */
    uint32_t *layer;          /* [n_moe] */
    int32_t *token, *pos;     /* [n_tokens] */
    float *entropy;           /* [n_tokens][n_moe] */
    float *weight;            /* [n_tokens][n_moe][k] */
    uint16_t *expert;         /* [n_tokens][n_moe][k] */
    uint32_t n_pieces;
    int32_t *piece_id;        /* [n_pieces] ascending */
    char **piece;             /* [n_pieces] NUL-terminated texts */
} moe_trace;

/* Parse a trace held in memory (path is for messages). On failure *t is left empty. */
moe_status moe_trace_parse(const char *path, const unsigned char *buf, size_t len, moe_trace *t);
moe_status moe_trace_read(const char *path, moe_trace *t);
void moe_trace_free(moe_trace *t);
/* Text of a token id, or NULL if the trace has none. */
const char *moe_trace_piece(const moe_trace *t, int32_t id);

/* Streaming writer: records are appended as they come, the header is completed at the end. */
typedef struct moe_trace_writer {
    moe_atomic_file af;
    uint32_t n_layers, n_moe, n_experts, k, vocab;
    uint64_t n_tokens;
    uint32_t name_len;
    size_t rec_bytes;
    unsigned char *rec;
    moe_status err;
} moe_trace_writer;

moe_status moe_trace_writer_open(moe_trace_writer *w, const char *path, const char *model, uint32_t n_layers,
                                 const uint32_t *layers, uint32_t n_moe, uint32_t n_experts, uint32_t k,
                                 uint32_t vocab);
/* One token: entropy[n_moe], weight and expert [n_moe * k] (expert -1 for an unused slot). */
moe_status moe_trace_writer_add(moe_trace_writer *w, int32_t token, int32_t pos, const float *entropy,
                                const float *weight, const int *expert);
/* Pieces (ascending ids) then the header; commits the file atomically. Always releases w. */
moe_status moe_trace_writer_finish(moe_trace_writer *w, uint32_t n_pieces, const int32_t *ids, const char *const *texts);
void moe_trace_writer_abort(moe_trace_writer *w);

/* CSV export into dir: routes.csv (token,pos,token_id,layer,slot,expert,weight; one row per used slot),
 * entropy.csv (token,layer,entropy) and tokens.csv (token,pos,token_id,text). */
moe_status moe_trace_write_csv(const moe_trace *t, const char *dir);
#endif
