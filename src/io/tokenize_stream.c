/* tokenize_stream.c - encode a long text in verified parts (see tokenize_stream.h).
 *
 * The text not yet encoded sits in one buffer, [s, n). Once it holds a part plus two margins, the
 * last candidate cut c before s + part is tested: with a the last candidate at least MARGIN bytes
 * before c (or s, itself a cut) and b the first at least MARGIN bytes after it (or the end of the
 * text), ids(text[a, b)) must equal ids(text[a, c)) followed by ids(text[c, b)). Up to MAX_TRIES
 * earlier candidates are tried; if none holds, the part doubles. A text that starts at a cut is
 * encoded as a continuation (Metaspace "first" does not apply), exactly as inside a whole encode. */
#include "io/tokenize_stream.h"
#include "core/error.h"
#include "io/input_file.h"
#include "io/json.h"
#include "io/tokenizer_internal.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PART ((size_t)1 << 20)
#define MARGIN 4096
#define MAX_TRIES 16

typedef struct stream {
    const moe_tokenizer *t;
    const char *name;
    int fd;                      /* the file, or -1 for memory */
    const char *mem;
    size_t mem_len, mem_pos;
    uint64_t limit, read_total;  /* file: at most limit bytes */
    tk_buf buf;                  /* input from offset base */
    uint64_t base;
    size_t s, checked;           /* not yet encoded from s; valid UTF-8 up to checked */
    int eof;
    uint64_t msg_off;            /* added to byte offsets in messages */
    moe_tokens_fn fn;
    void *user;
} stream;

static moe_status fill(stream *S, size_t want) {
    while (!S->eof && S->buf.n - S->s < want) {
        size_t need = want - (S->buf.n - S->s);
        if (need < 65536) need = 65536;
        if (tk_buf_reserve(&S->buf, need + 1)) return moe_fail(MOE_ENOMEM, "%s: out of memory", S->name);
        size_t got = 0;
        if (S->fd < 0) {
            got = S->mem_len - S->mem_pos < need ? S->mem_len - S->mem_pos : need;
            memcpy(S->buf.p + S->buf.n, S->mem + S->mem_pos, got);
            S->mem_pos += got;
        } else {
            ssize_t r = read(S->fd, S->buf.p + S->buf.n, need);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return moe_fail(MOE_EIO, "%s: read failed: %s", S->name, strerror(errno));
            got = (size_t)r;
            S->read_total += got;
            if (S->read_total > S->limit)
                return moe_fail(MOE_EINPUT, "%s: more than the %llu bytes allowed", S->name, (unsigned long long)S->limit);
        }
        S->buf.n += got;
        S->buf.p[S->buf.n] = 0;
        if (!got) S->eof = 1;
    }
    /* validate what arrived, but for a character cut off by the end of a read */
    const unsigned char *p = (const unsigned char *)S->buf.p;
    size_t end = S->buf.n - (S->eof ? 0 : tk_utf8_incomplete_tail(p, S->buf.n));
    if (end > S->checked) {
        size_t bad = S->checked + moe_utf8_check(p + S->checked, end - S->checked);
        if (bad != end)
            return moe_fail(MOE_EINPUT, "%s: not valid UTF-8 at byte %llu", S->name,
                            (unsigned long long)(S->msg_off + S->base + bad));
        S->checked = end;
    }
    return MOE_OK;
}

/* After a newline, before a printable ASCII character. */
static int candidate(const stream *S, size_t p) {
    unsigned char c = (unsigned char)S->buf.p[p];
    return p > 0 && p < S->buf.n && S->buf.p[p - 1] == '\n' && c > 0x20 && c < 0x7f;
}

/* Errors of the tokenizer name its file; the text's name goes in front, as for a whole encode. */
static moe_status encode(const stream *S, size_t from, size_t to, tk_ids *ids) {
    ids->n = 0;
    moe_status st = tk_encode_part(S->t, S->buf.p + from, to - from, S->base + from == 0, ids);
    if (st) moe_error_prefix(S->name);
    return st;
}

/* Whether cutting at c changes no id (see the file comment). */
static moe_status verify(stream *S, size_t c, tk_ids w[3], int *ok) {
    *ok = 0;
    size_t a = c > S->s + MARGIN ? c - MARGIN : S->s, b = c + MARGIN;
    while (a > S->s && !candidate(S, a)) a--;
    while (b < S->buf.n && !candidate(S, b)) b++;
    if (b >= S->buf.n) {
        if (!S->eof) return MOE_OK;   /* not enough text after c to judge */
        b = S->buf.n;
    }
    MOE_TRY(encode(S, a, b, &w[0]));
    MOE_TRY(encode(S, a, c, &w[1]));
    MOE_TRY(encode(S, c, b, &w[2]));
    *ok = w[0].n == w[1].n + w[2].n && !memcmp(w[0].v, w[1].v, sizeof(int32_t) * w[1].n) &&
          !memcmp(w[0].v + w[1].n, w[2].v, sizeof(int32_t) * w[2].n);
    return MOE_OK;
}

static moe_status run(stream *S, const moe_tokenize_stream_opts *o) {
    S->msg_off = o ? o->offset : 0;
    size_t part = o && o->part ? o->part : DEFAULT_PART, cuts = 0;
    tk_ids ids = {0}, w[3] = {{0}};
    moe_status st = MOE_OK;
    int stop = 0;
    while (!st && !stop) {
        if ((st = fill(S, part + 2 * MARGIN)) != MOE_OK) break;
        size_t c = 0, end = S->buf.n;
        if (!S->eof || end - S->s > part + MARGIN) {
            size_t p = S->s + part < end ? S->s + part : end;
            for (int tries = 0; !st && tries < MAX_TRIES && p > S->s + MARGIN; p--) {
                if (!candidate(S, p)) continue;
                int ok;
                if ((st = verify(S, p, w, &ok)) != MOE_OK) break;
                tries++;
                if (ok) { c = p; break; }
            }
            if (st) break;
            if (!c) {   /* nothing verified: a longer part */
                if (S->eof && end - S->s <= part) c = end;
                else { part *= 2; continue; }
            }
        } else {
            c = end;   /* the rest of the text */
        }
        if ((st = encode(S, S->s, c, &ids)) != MOE_OK) break;
        if ((st = S->fn(S->user, ids.v, ids.n, &stop)) != MOE_OK) break;
        if (c < end) cuts++;
        S->s = c;
        if (S->s == S->buf.n && S->eof) break;
        if (S->s > S->buf.n / 2) {   /* drop the encoded text */
            memmove(S->buf.p, S->buf.p + S->s, S->buf.n - S->s + 1);
            S->buf.n -= S->s;
            S->checked -= S->s;
            S->base += S->s;
            S->s = 0;
        }
    }
    free(ids.v);
    for (int i = 0; i < 3; i++) free(w[i].v);
    tk_buf_free(&S->buf);
    if (o && o->cuts) *o->cuts = cuts;
    return st;
}

moe_status moe_tokenize_file_stream(const moe_tokenizer *t, const char *path, size_t max_bytes,
                                    const moe_tokenize_stream_opts *o, moe_tokens_fn fn, void *user) {
    stream S = {0};
    S.t = t;
    S.name = path;
    S.limit = max_bytes;
    S.fn = fn;
    S.user = user;
    MOE_TRY(moe_input_open(path, 0, &S.fd, NULL));
    moe_status st = run(&S, o);
    close(S.fd);
    return st;
}

moe_status moe_tokenize_buffer_stream(const moe_tokenizer *t, const char *name, const char *text, size_t len,
                                      const moe_tokenize_stream_opts *o, moe_tokens_fn fn, void *user) {
    stream S = {0};
    S.t = t;
    S.name = name;
    S.fd = -1;
    S.mem = text;
    S.mem_len = len;
    S.fn = fn;
    S.user = user;
    return run(&S, o);
}
