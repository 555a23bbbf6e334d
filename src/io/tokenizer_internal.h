/* tokenizer_internal.h - the pieces of the tokenizer.json engine shared by its files.
 *
 * The pipeline mirrors Hugging Face `tokenizers` stage by stage, because exact ids depend on the
 * order in which text is cut: (1) added tokens that are not "normalized" are cut out of the raw
 * text; (2) every remaining piece is normalized on its own; (3) "normalized" added tokens are cut
 * out of the normalized pieces; (4) pre-tokenizers split the rest into words; (5) the BPE model
 * turns each word into ids. Decoding runs the decoder chain over the pieces of the ids.
 *
 * Strings move between stages in a tk_list: pieces stored back to back in one growing buffer, so
 * a stage allocates nothing per piece. Everything in a loaded tokenizer is read-only afterwards;
 * per-call state (regex match data, BPE scratch, the word cache) lives in a tk_ctx made by each
 * encode call, so one tokenizer can serve several threads.
 *
 * A tokenizer.json is untrusted input, and some are built to make the work explode: a chain of
 * Replace normalizers or decoders whose output grows geometrically, or a split regex that rescans
 * the rest of the text at every match (linear per match, quadratic overall). Each encode or decode
 * therefore carries a work budget in its tk_ctx, proportional to its input: the bytes every
 * normalizer and decoder step writes and the bytes regex matching scans are charged against it,
 * and running out is a one-line error naming the file and the stage, never a hang.
 *
 * Files: tokenizer.c (loading, added tokens, public API), tokenizer_util.c (buffers, UTF-8,
 * regex), tokenizer_norm.c, tokenizer_pretok.c, tokenizer_bpe.c, tokenizer_decode.c. */
#ifndef MOE_IO_TOKENIZER_INTERNAL_H
#define MOE_IO_TOKENIZER_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include "core/strmap.h"
#include "io/json.h"
#include "moe.h"

/* ---- growing buffers and piece lists (tokenizer_util.c) ---- */

typedef struct tk_buf { char *p; size_t n, cap; } tk_buf;
int tk_buf_reserve(tk_buf *b, size_t extra);            /* 0 ok, -1 no memory */
int tk_buf_put(tk_buf *b, const void *s, size_t n);
void tk_buf_free(tk_buf *b);

/* id >= 0: the piece is already a token (an added token) and later stages pass it through.
 * at_start: the piece begins at byte 0 of the original text (Metaspace prepend_scheme "first"). */
typedef struct tk_piece { size_t off, len; int32_t id; int at_start; } tk_piece;
typedef struct tk_list { tk_buf text; tk_piece *v; size_t n, cap; } tk_list;
int tk_list_push(tk_list *l, const char *s, size_t n, int32_t id, int at_start);
/* Start a piece whose bytes the caller then appends with tk_buf_put(&l->text, ...). */
int tk_list_open(tk_list *l, int32_t id, int at_start);
void tk_list_close(tk_list *l);                           /* sets the length of the last opened piece */
void tk_list_clear(tk_list *l);
void tk_list_free(tk_list *l);
static inline const char *tk_piece_str(const tk_list *l, size_t i) { return l->text.p + l->v[i].off; }

typedef struct tk_ids { int32_t *v; size_t n, cap; } tk_ids;
int tk_ids_push(tk_ids *a, int32_t id);

/* A fast string hash (word at a time, well mixed in every bit). */
uint64_t tk_hash(const void *p, size_t n);

typedef struct tk_span { size_t start, end; } tk_span;
typedef struct tk_spans { tk_span *v; size_t n, cap; } tk_spans;
int tk_spans_push(tk_spans *a, size_t start, size_t end);

/* ---- UTF-8 ---- */

/* Length of the character starting with byte c (text is already validated). */
static inline size_t tk_utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4; }
uint32_t tk_utf8_decode(const char *s, size_t *len);      /* one character of valid UTF-8 */
size_t tk_utf8_encode(uint32_t cp, char *out);             /* 1..4 bytes */
int tk_is_white_space(uint32_t cp);                        /* Unicode White_Space (Rust char::is_whitespace) */
/* Append bytes as UTF-8 the way Rust's String::from_utf8_lossy does: each maximal invalid subpart
 * becomes one U+FFFD. *incomplete is set when the bytes end inside an otherwise valid character. */
int tk_utf8_lossy(tk_buf *out, const unsigned char *s, size_t n, int *incomplete);
/* Length of the valid-but-unfinished UTF-8 sequence at the end of s (0 if s ends cleanly or invalidly). */
size_t tk_utf8_incomplete_tail(const unsigned char *s, size_t n);

/* ---- regular expressions in the Oniguruma dialect of tokenizers, run by PCRE2 ---- */

typedef struct tk_regex { pcre2_code *code; } tk_regex;
/* where: "FILE: field" for messages. */
moe_status tk_regex_compile(const char *where, const char *pattern, size_t len, tk_regex *out);
void tk_regex_free(tk_regex *re);

/* Per-call state: match data, JIT stack, scratch for every stage. */
typedef struct tk_bpe_cache tk_bpe_cache;
typedef struct tk_ctx {
    const char *path;                 /* tokenizer file, for messages */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    tk_spans spans;                   /* regex or literal matches */
    tk_bpe_cache *cache;              /* BPE word cache, created lazily */
    void *sym, *heap;                 /* BPE scratch */
    size_t sym_cap, heap_cap;
    tk_buf word;                      /* BPE scratch: a word with prefix/suffix */
    struct tk_seg *segs;              /* pre-tokenizer scratch: pieces of a split */
    size_t segs_cap;
    uint64_t work_left, work_total;   /* the budget of this call (tk_ctx_budget) */
} tk_ctx;
typedef struct tk_seg { size_t start, end; int match; } tk_seg;
moe_status tk_ctx_init(tk_ctx *c, const char *path);
void tk_ctx_free(tk_ctx *c);

/* The work budget of one call over input_bytes of input: TK_WORK_BASE + TK_WORK_PER_BYTE per byte.
 * Real tokenizers use a few units per byte (docs/TOKENIZER.md); tk_ctx_init sets the budget of an
 * empty input. */
#define TK_WORK_BASE ((uint64_t)1 << 16)
#define TK_WORK_PER_BYTE 256u
void tk_ctx_budget(tk_ctx *c, size_t input_bytes);
/* Charge n units of work done by `what` ("normalizer output", "decoder output", "regex matching");
 * MOE_EINPUT naming the tokenizer file once the budget is spent. */
moe_status tk_spend(tk_ctx *c, size_t n, const char *what);
/* All non-empty, non-overlapping matches of re in s, left to right, into c->spans. */
moe_status tk_regex_find_all(const tk_regex *re, tk_ctx *c, const char *s, size_t n);
/* All occurrences of a literal, non-overlapping, left to right, into c->spans. */
moe_status tk_literal_find_all(tk_ctx *c, const char *lit, size_t litn, const char *s, size_t n);

/* ---- JSON helpers for component parsing ---- */

/* Concatenate "FILE: field" style locations; returns a static-length stack string via buf. */
const char *tk_where(char *buf, size_t cap, const char *parent, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
#define TK_WHERE_CAP 256
/* A string field that may be given as {"String": s} or {"Regex": r} (tokenizers' Pattern). */
typedef struct tk_pattern { int is_regex; char *lit; size_t lit_len; tk_regex re; } tk_pattern;
moe_status tk_pattern_parse(const char *where, const cJSON *obj, const char *key, tk_pattern *out);
void tk_pattern_free(tk_pattern *p);
moe_status tk_pattern_find_all(const tk_pattern *p, tk_ctx *c, const char *s, size_t n);
/* A required string field copied out (validated UTF-8); *len excludes the NUL. */
moe_status tk_json_strdup(const char *where, const cJSON *obj, const char *key, int required, const char *def,
                          char **out, size_t *len);
/* A field holding one character (Metaspace replacement, Strip content). */
moe_status tk_json_char(const char *where, const cJSON *obj, const char *key, uint32_t def, uint32_t *out);

/* ---- normalizers (tokenizer_norm.c) ---- */

typedef struct tk_norm tk_norm;
moe_status tk_norm_parse(const char *where, const cJSON *j, tk_norm **out);   /* j null -> *out NULL */
/* Normalize s into out (cleared first). */
moe_status tk_norm_apply(const tk_norm *nm, tk_ctx *c, const char *s, size_t n, tk_buf *out);
void tk_norm_free(tk_norm *nm);

/* ---- pre-tokenizers (tokenizer_pretok.c) ---- */

typedef struct tk_pretok tk_pretok;
moe_status tk_pretok_parse(const char *where, const cJSON *j, tk_pretok **out);
/* Split every piece of in (pieces with id >= 0 pass through) into out (cleared first). */
moe_status tk_pretok_apply(const tk_pretok *p, tk_ctx *c, const tk_list *in, tk_list *out);
void tk_pretok_free(tk_pretok *p);
/* The GPT-2 byte to character table: bytes that print map to themselves, the rest to U+0100.. */
uint32_t tk_byte_to_cp(unsigned char b);
int tk_cp_to_byte(uint32_t cp);                            /* -1 if cp is not in the table */

/* ---- the BPE model (tokenizer_bpe.c) ---- */

typedef struct tk_bpe {
    uint64_t *vslot;                  /* vocab hash table: (hash tag << 32) | (entry + 1); 0 = empty */
    size_t vcap;
    const char **estr;                /* [n_vocab] the vocab entries in file order; strings live in pool */
    uint32_t *elen;
    int32_t *eid;
    char *pool;
    size_t n_vocab;                   /* entries in the vocab object (tokenizers' get_vocab_size) */
    int32_t n_ids;                    /* largest id + 1 */
    /* id -> entry, in memory proportional to the entries (an id of 16M must not cost 16M slots):
     * dense [n_ids] (entry + 1, 0 = none) when the ids are mostly used, else by_id: the entries
     * sorted by id, searched by bisection */
    uint32_t *id_entry;
    uint32_t *by_id;
    uint64_t *mkey;                   /* merges: (left id, right id) -> rank, merged id */
    uint32_t *mrank;
    int32_t *mnew;
    size_t mcap;
    char *unk;                        /* unk_token or NULL; its id is looked up when needed */
    int32_t unk_id;                   /* -1 if the unk token is not in the vocab */
    int fuse_unk, byte_fallback, ignore_merges;
    char *csp, *eow;                  /* continuing_subword_prefix, end_of_word_suffix (NULL if none) */
    size_t csp_len, eow_len;
    int32_t byte_id[256];             /* <0xNN> tokens for byte fallback, -1 if absent */
} tk_bpe;
moe_status tk_bpe_parse(const char *where, const cJSON *model, tk_bpe *b);
void tk_bpe_free(tk_bpe *b);
int32_t tk_bpe_token_id(const tk_bpe *b, const char *s, size_t n);
/* The vocab string of id (NULL if no entry has that id); *len gets its length. */
const char *tk_bpe_id_str(const tk_bpe *b, int32_t id, size_t *len);
/* Whether a table of n slots for ids in [0, n) stays proportional to `used` entries. */
static inline int tk_dense_ok(int64_t n, size_t used) { return n <= 2 * (int64_t)used + 65536; }
/* Append the ids of one word. */
moe_status tk_bpe_word(const tk_bpe *b, tk_ctx *c, const char *w, size_t n, tk_ids *out);
void tk_bpe_cache_free(tk_bpe_cache *cache);

/* ---- loading from memory (tokenizer.c; for the fuzz harness and tests) ---- */

/* Append the ids of text (valid UTF-8) to *out. at_start: the text begins the whole input (Metaspace
 * prepend_scheme "first"); 0 for a part of a longer text (src/io/tokenize_stream.c). */
moe_status tk_encode_part(const moe_tokenizer *t, const char *text, size_t len, int at_start, tk_ids *out);
/* Load a tokenizer.json held in memory; name stands in for the path in messages. */
moe_status tk_tokenizer_load_mem(const char *name, const char *buf, size_t len, moe_tokenizer **out);

/* ---- decoders (tokenizer_decode.c) ---- */

typedef struct tk_dec tk_dec;
moe_status tk_dec_parse(const char *where, const cJSON *j, tk_dec **out);
/* Run the decoder chain over tokens; the joined text is appended to out. *incomplete is set when
 * the text ends in bytes of an unfinished UTF-8 character (shown as U+FFFD). */
moe_status tk_dec_run(const tk_dec *d, tk_ctx *c, tk_list *tokens, tk_buf *out, int *incomplete);
void tk_dec_free(tk_dec *d);

#endif
