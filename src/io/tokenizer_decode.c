/* tokenizer_decode.c - decoders of tokenizer.json: ByteLevel, ByteFallback, Metaspace, Replace,
 * Fuse, Strip, BPEDecoder and Sequence.
 *
 * A decoder maps a list of token strings to a list of strings; the chain's output is joined. The
 * semantics follow tokenizers exactly, including its rough edges, because `decode` must give the
 * same text: ByteLevel turns the whole list into one string, using a token's own UTF-8 bytes when
 * any of its characters is outside the byte table (added tokens such as "<｜tool▁sep｜>"), and
 * replaces each maximal invalid UTF-8 subpart with U+FFFD; ByteFallback turns a run of <0xNN>
 * tokens into text only if the whole run is valid UTF-8, and otherwise into one U+FFFD per byte;
 * Metaspace drops every replacement character of the first token when it prepends one.
 *
 * For streaming, each run reports whether its text ends inside an unfinished character (bytes of a
 * valid prefix at the very end), which is when a stream must wait for the next token.
 *
 * Every step's output is charged to the call's work budget (tokenizer_internal.h), Replace as it
 * writes: a chain of Replace decoders that doubles the text each time stops with an error. */
#include "io/tokenizer_internal.h"
#include "core/error.h"
#include "io/json.h"
#include <stdlib.h>
#include <string.h>

enum { D_BYTELEVEL, D_BYTEFALLBACK, D_METASPACE, D_REPLACE, D_FUSE, D_STRIP, D_BPE, D_SEQ };

struct tk_dec {
    int kind;
    uint32_t ch;           /* Metaspace replacement, Strip content */
    int prepend;           /* Metaspace: drop replacements in the first token */
    int64_t start, stop;   /* Strip */
    tk_pattern pat;        /* Replace */
    char *text;            /* Replace content, BPEDecoder suffix */
    size_t text_len;
    tk_dec **sub;
    int nsub;
};

void tk_dec_free(tk_dec *d) {
    if (!d) return;
    for (int i = 0; i < d->nsub; i++) tk_dec_free(d->sub[i]);
    free(d->sub);
    tk_pattern_free(&d->pat);
    free(d->text);
    free(d);
}

static moe_status parse(const char *where, const cJSON *j, int depth, tk_dec **out) {
    *out = NULL;
    if (depth > 16) return moe_fail(MOE_EINPUT, "%s: decoders nested too deeply", where);
    if (!cJSON_IsObject(j)) return moe_fail(MOE_EINPUT, "%s: must be an object or null", where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(t)) return moe_fail(MOE_EINPUT, "%s: field \"type\" must be a string", where);
    const char *type = t->valuestring;
    tk_dec *d = calloc(1, sizeof *d);
    if (!d) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    moe_status st = MOE_OK;
    if (!strcmp(type, "ByteLevel")) d->kind = D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d->kind = D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->kind = D_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        d->kind = D_METASPACE;
        st = tk_json_char(where, j, "replacement", 0x2581, &d->ch);
        const char *scheme = NULL;
        if (!st) st = moe_json_str(where, j, "prepend_scheme", 0, NULL, &scheme);
        if (!st && scheme) {
            if (strcmp(scheme, "always") && strcmp(scheme, "first") && strcmp(scheme, "never"))
                st = moe_fail(MOE_EINPUT, "%s: unknown prepend_scheme \"%.40s\"", where, scheme);
            d->prepend = strcmp(scheme, "never") != 0;
        } else if (!st) {
            st = moe_json_bool(where, j, "add_prefix_space", 0, 1, &d->prepend);
        }
    } else if (!strcmp(type, "Replace")) {
        d->kind = D_REPLACE;
        st = tk_pattern_parse(where, j, "pattern", &d->pat);
        if (!st) st = tk_json_strdup(where, j, "content", 1, NULL, &d->text, &d->text_len);
    } else if (!strcmp(type, "Strip")) {
        d->kind = D_STRIP;
        st = tk_json_char(where, j, "content", ' ', &d->ch);
        if (!st) st = moe_json_int(where, j, "start", 0, 0, 0, 1 << 30, &d->start);
        if (!st) st = moe_json_int(where, j, "stop", 0, 0, 0, 1 << 30, &d->stop);
    } else if (!strcmp(type, "BPEDecoder")) {
        d->kind = D_BPE;
        st = tk_json_strdup(where, j, "suffix", 0, "</w>", &d->text, &d->text_len);
    } else if (!strcmp(type, "Sequence")) {
        d->kind = D_SEQ;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        if (!cJSON_IsArray(a)) st = moe_fail(MOE_EINPUT, "%s: field \"decoders\" must be an array", where);
        int n = st ? 0 : cJSON_GetArraySize(a);
        if (n > 0 && !(d->sub = calloc((size_t)n, sizeof *d->sub))) st = moe_fail(MOE_ENOMEM, "%s: out of memory", where);
        for (int i = 0; !st && i < n; i++) {
            char w[TK_WHERE_CAP];
            st = parse(tk_where(w, sizeof w, where, ".decoders[%d]", i), cJSON_GetArrayItem(a, i), depth + 1, &d->sub[i]);
            if (!st) d->nsub++;
        }
    } else {
        st = moe_fail(MOE_EINPUT, "%s: decoder type \"%.60s\" is not supported", where, type);
    }
    if (st) { tk_dec_free(d); return st; }
    *out = d;
    return MOE_OK;
}

moe_status tk_dec_parse(const char *where, const cJSON *j, tk_dec **out) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return MOE_OK;
    return parse(where, j, 0, out);
}

/* ---- the decoders, each from list in to list out ---- */

static int byte_level(const tk_list *in, tk_list *out, int *incomplete) {
    tk_buf bytes = {0};
    size_t total = 1;
    for (size_t i = 0; i < in->n; i++) total += in->v[i].len;
    int bad = tk_buf_reserve(&bytes, total);   /* a token never decodes to more bytes than it has */
    for (size_t i = 0; i < in->n && !bad; i++) {
        const char *s = tk_piece_str(in, i);
        size_t n = in->v[i].len, mark = bytes.n;
        for (size_t k = 0; k < n;) {
            size_t l;
            int b = tk_cp_to_byte(tk_utf8_decode(s + k, &l));
            if (b < 0) {   /* not a byte-level token: keep its UTF-8 as it is */
                bytes.n = mark;
                memcpy(bytes.p + bytes.n, s, n);
                bytes.n += n;
                break;
            }
            bytes.p[bytes.n++] = (char)b;
            k += l;
        }
    }
    if (!bad) bad = tk_list_open(out, -1, 0) || tk_utf8_lossy(&out->text, (const unsigned char *)bytes.p, bytes.n, incomplete);
    if (!bad) tk_list_close(out);
    tk_buf_free(&bytes);
    return bad;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "<0xNN>" -> byte; u8::from_str_radix also takes "+N". */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static int utf8_valid(const char *s, size_t n) { return moe_utf8_check((const unsigned char *)s, n) == n; }

static int flush_bytes(tk_buf *run, tk_list *out, int at_end, int *incomplete) {
    if (!run->n) return 0;
    int bad;
    if (utf8_valid(run->p, run->n)) bad = tk_list_push(out, run->p, run->n, -1, 0);
    else {
        bad = tk_list_open(out, -1, 0);
        for (size_t i = 0; i < run->n && !bad; i++) bad = tk_buf_put(&out->text, "\xef\xbf\xbd", 3);
        if (!bad) tk_list_close(out);
        size_t tail = tk_utf8_incomplete_tail((const unsigned char *)run->p, run->n);
        if (at_end && tail && utf8_valid(run->p, run->n - tail)) *incomplete = 1;
    }
    run->n = 0;
    return bad;
}

static int byte_fallback(const tk_list *in, tk_list *out, int *incomplete) {
    tk_buf run = {0};
    int bad = 0;
    for (size_t i = 0; i < in->n && !bad; i++) {
        const char *s = tk_piece_str(in, i);
        int b = byte_token(s, in->v[i].len);
        if (b >= 0) {
            unsigned char ub = (unsigned char)b;
            bad = tk_buf_put(&run, &ub, 1);
            continue;
        }
        bad = flush_bytes(&run, out, 0, incomplete) || tk_list_push(out, s, in->v[i].len, -1, 0);
    }
    if (!bad) bad = flush_bytes(&run, out, 1, incomplete);
    tk_buf_free(&run);
    return bad;
}

static int metaspace(const tk_dec *d, const tk_list *in, tk_list *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = tk_piece_str(in, i);
        if (tk_list_open(out, -1, 0)) return -1;
        for (size_t k = 0; k < in->v[i].len;) {
            size_t l;
            uint32_t cp = tk_utf8_decode(s + k, &l);
            if (cp != d->ch) { if (tk_buf_put(&out->text, s + k, l)) return -1; }
            else if (!(i == 0 && d->prepend) && tk_buf_put(&out->text, " ", 1)) return -1;
            k += l;
        }
        tk_list_close(out);
    }
    return 0;
}

static moe_status replace(const tk_dec *d, tk_ctx *c, const tk_list *in, tk_list *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = tk_piece_str(in, i);
        size_t n = in->v[i].len, prev = 0;
        MOE_TRY(tk_pattern_find_all(&d->pat, c, s, n));
        if (tk_list_open(out, -1, 0)) goto nomem;
        for (size_t k = 0; k < c->spans.n; k++) {
            MOE_TRY(tk_spend(c, c->spans.v[k].start - prev + d->text_len, "decoder output"));
            if (tk_buf_put(&out->text, s + prev, c->spans.v[k].start - prev) || tk_buf_put(&out->text, d->text, d->text_len))
                goto nomem;
            prev = c->spans.v[k].end;
        }
        if (tk_buf_put(&out->text, s + prev, n - prev)) goto nomem;
        tk_list_close(out);
    }
    return MOE_OK;
nomem:
    return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
}

static int strip(const tk_dec *d, const tk_list *in, tk_list *out) {
    char enc[4];
    size_t el = tk_utf8_encode(d->ch, enc);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = tk_piece_str(in, i);
        size_t a = 0, b = in->v[i].len;
        for (int64_t k = 0; k < d->start && b - a >= el && !memcmp(s + a, enc, el); k++) a += el;
        for (int64_t k = 0; k < d->stop && b - a >= el && !memcmp(s + b - el, enc, el); k++) b -= el;
        if (tk_list_push(out, s + a, b - a, -1, 0)) return -1;
    }
    return 0;
}

static int fuse(const tk_list *in, tk_list *out) {
    if (tk_list_open(out, -1, 0)) return -1;
    for (size_t i = 0; i < in->n; i++)
        if (tk_buf_put(&out->text, tk_piece_str(in, i), in->v[i].len)) return -1;
    tk_list_close(out);
    return 0;
}

static int bpe_suffix(const tk_dec *d, const tk_list *in, tk_list *out) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = tk_piece_str(in, i);
        size_t n = in->v[i].len, prev = 0;
        const char *rep = i + 1 == in->n ? "" : " ";
        if (tk_list_open(out, -1, 0)) return -1;
        for (size_t k = 0; d->text_len && k + d->text_len <= n;) {
            if (!memcmp(s + k, d->text, d->text_len)) {
                if (tk_buf_put(&out->text, s + prev, k - prev) || tk_buf_put(&out->text, rep, strlen(rep))) return -1;
                k += d->text_len;
                prev = k;
            } else k++;
        }
        if (tk_buf_put(&out->text, s + prev, n - prev)) return -1;
        tk_list_close(out);
    }
    return 0;
}

static moe_status step(const tk_dec *d, tk_ctx *c, const tk_list *in, tk_list *out, int *incomplete) {
    tk_list_clear(out);
    int bad = 0;
    switch (d->kind) {   /* steps other than Replace and Sequence grow the text by a bounded factor: charged after */
    case D_BYTELEVEL: bad = byte_level(in, out, incomplete); break;
    case D_BYTEFALLBACK: bad = byte_fallback(in, out, incomplete); break;
    case D_METASPACE: bad = metaspace(d, in, out); break;
    case D_REPLACE: return replace(d, c, in, out);
    case D_FUSE: bad = fuse(in, out); break;
    case D_STRIP: bad = strip(d, in, out); break;
    case D_BPE: bad = bpe_suffix(d, in, out); break;
    case D_SEQ: {
        tk_list a = {0}, b = {0};
        const tk_list *cur = in;
        moe_status st = MOE_OK;
        for (int i = 0; !st && i < d->nsub; i++) {
            tk_list *dst = cur == &a ? &b : &a;
            st = step(d->sub[i], c, cur, dst, incomplete);
            cur = dst;
        }
        if (!st)
            for (size_t i = 0; !bad && i < cur->n; i++)
                bad = tk_list_push(out, tk_piece_str(cur, i), cur->v[i].len, -1, 0);
        tk_list_free(&a);
        tk_list_free(&b);
        if (st) return st;
        return bad ? moe_fail(MOE_ENOMEM, "%s: out of memory", c->path) : MOE_OK;
    }
    }
    if (bad) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
    return tk_spend(c, out->text.n, "decoder output");
}

moe_status tk_dec_run(const tk_dec *d, tk_ctx *c, tk_list *tokens, tk_buf *out, int *incomplete) {
    *incomplete = 0;
    tk_list res = {0};
    const tk_list *fin = tokens;
    moe_status st = MOE_OK;
    if (d) {
        st = step(d, c, tokens, &res, incomplete);
        fin = &res;
    }
    for (size_t i = 0; !st && i < fin->n; i++)
        if ((!d && i && tk_buf_put(out, " ", 1)) || tk_buf_put(out, tk_piece_str(fin, i), fin->v[i].len))
            st = moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
    tk_list_free(&res);
    return st;
}
