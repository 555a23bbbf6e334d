/* tokenizer_util.c - buffers, UTF-8 and regular expressions for the tokenizer engine.
 *
 * Regular expressions: tokenizers compiles pre-tokenizer patterns with Oniguruma; we run them with
 * PCRE2 (UTF + UCP, JIT where available). The two engines agree on syntax and backtracking order for
 * everything tokenizer.json files use, except the meaning of a few escapes, which we rewrite before
 * compiling so that each matches exactly the characters Oniguruma matches:
 *   \s \S  Oniguruma: Unicode White_Space (includes U+0085); PCRE2 UCP: Z + \t\n\v\f\r (no U+0085)
 *   \w \W  Oniguruma: L, M, N, Pc;  PCRE2 10.42 UCP: L, N, underscore
 *   \d \D  both Nd, written out so the meaning does not depend on the PCRE2 version
 *   \h \H  Oniguruma: hexadecimal digit;  PCRE2: horizontal space
 *   \b \B  word boundary over the Oniguruma \w above
 *   \uHHHH Oniguruma only; rewritten \x{HHHH}
 *   (?m)   Oniguruma: dot matches newline, i.e. PCRE2 (?s). ^ and $ are always line anchors in
 *          Oniguruma's Ruby syntax, so patterns compile with PCRE2_MULTILINE.
 * Class intersections ([a&&b]), nested classes and negated shorthands that have no PCRE2 spelling
 * inside a class are refused with an error rather than silently matched differently. */
#include "io/tokenizer_internal.h"
#include "core/error.h"
#include "io/json.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ---- */

int tk_buf_reserve(tk_buf *b, size_t extra) {
    if (extra <= b->cap - b->n) return 0;
    if (extra > SIZE_MAX / 2 - b->n) return -1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->n < extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (tk_buf_reserve(b, n + 1)) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;   /* keep a terminator so pieces can be printed while debugging */
    return 0;
}

void tk_buf_free(tk_buf *b) { free(b->p); memset(b, 0, sizeof *b); }

static int grow_array(void **v, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return -1;
        c *= 2;
    }
    void *p = realloc(*v, c * elem);
    if (!p) return -1;
    *v = p;
    *cap = c;
    return 0;
}

int tk_list_open(tk_list *l, int32_t id, int at_start) {
    if (grow_array((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) return -1;
    l->v[l->n++] = (tk_piece){l->text.n, 0, id, at_start};
    return 0;
}

void tk_list_close(tk_list *l) { l->v[l->n - 1].len = l->text.n - l->v[l->n - 1].off; }

int tk_list_push(tk_list *l, const char *s, size_t n, int32_t id, int at_start) {
    if (tk_list_open(l, id, at_start) || tk_buf_put(&l->text, s, n)) return -1;
    tk_list_close(l);
    return 0;
}

void tk_list_clear(tk_list *l) { l->n = 0; l->text.n = 0; }
void tk_list_free(tk_list *l) { tk_buf_free(&l->text); free(l->v); memset(l, 0, sizeof *l); }

int tk_ids_push(tk_ids *a, int32_t id) {
    if (grow_array((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return -1;
    a->v[a->n++] = id;
    return 0;
}

int tk_spans_push(tk_spans *a, size_t start, size_t end) {
    if (grow_array((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v)) return -1;
    a->v[a->n++] = (tk_span){start, end};
    return 0;
}

uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

/* ---- UTF-8 ---- */

uint32_t tk_utf8_decode(const char *s, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t l = tk_utf8_len(u[0]);
    uint32_t cp = l == 1 ? u[0] : l == 2 ? u[0] & 0x1f : l == 3 ? u[0] & 0x0f : u[0] & 0x07;
    for (size_t k = 1; k < l; k++) cp = (cp << 6) | (u[k] & 0x3f);
    *len = l;
    return cp;
}

size_t tk_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xc0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12)); o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18)); o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

int tk_is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* One step of UTF-8 decoding at s[i]: returns 1 for a valid character, 0 for an invalid maximal
 * subpart, 2 for a valid prefix cut off by the end; *len is the bytes it covers. */
static int utf8_step(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned c = s[i];
    if (c < 0x80) { *len = 1; return 1; }
    size_t need;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else { *len = 1; return 0; }
    size_t k = 1;
    for (; k <= need; k++) {
        if (i + k >= n) { *len = k; return 2; }
        unsigned b = s[i + k];
        if (b < lo || b > hi) { *len = k; return 0; }
        lo = 0x80; hi = 0xbf;
    }
    *len = need + 1;
    return 1;
}

int tk_utf8_lossy(tk_buf *out, const unsigned char *s, size_t n, int *incomplete) {
    static const char repl[] = "\xef\xbf\xbd";
    if (incomplete) *incomplete = 0;
    size_t i = 0, run = 0;   /* s[run..i) is valid text not yet copied */
    while (i < n) {
        size_t len;
        int r = utf8_step(s, n, i, &len);
        if (r == 1) { i += len; continue; }
        if (tk_buf_put(out, s + run, i - run) || tk_buf_put(out, repl, 3)) return -1;
        if (r == 2 && incomplete) *incomplete = 1;
        i += len;
        run = i;
    }
    return tk_buf_put(out, s + run, n - run);
}

size_t tk_utf8_incomplete_tail(const unsigned char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        size_t i = n - back, len;
        if ((s[i] & 0xc0) == 0x80) continue;   /* a continuation byte: look further back */
        return utf8_step(s, n, i, &len) == 2 ? back : 0;
    }
    return 0;
}

/* ---- regular expressions ---- */

#define ONIG_WORD "\\p{L}\\p{M}\\p{N}\\p{Pc}"

static int put_s(tk_buf *b, const char *s) { return tk_buf_put(b, s, strlen(s)); }

static moe_status translate(const char *where, const char *p, size_t n, tk_buf *out) {
    int in_class = 0;
    size_t class_start = 0;
    for (size_t i = 0; i < n;) {
        char c = p[i];
        int bad = 0;
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = "\\p{White_Space}"; break;
            case 'S': rep = "\\P{White_Space}"; break;
            case 'd': rep = "\\p{Nd}"; break;
            case 'D': rep = "\\P{Nd}"; break;
            case 'w': rep = in_class ? ONIG_WORD : "[" ONIG_WORD "]"; break;
            case 'h': rep = in_class ? "0-9A-Fa-f" : "[0-9A-Fa-f]"; break;
            case 'W': case 'H':
                if (in_class)
                    return moe_fail(MOE_EINPUT, "%s: regex escape \\%c inside a character class is not supported", where, e);
                rep = e == 'W' ? "[^" ONIG_WORD "]" : "[^0-9A-Fa-f]";
                break;
            case 'b': case 'B':
                if (!in_class)
                    rep = e == 'b' ? "(?:(?<=[" ONIG_WORD "])(?![" ONIG_WORD "])|(?<![" ONIG_WORD "])(?=[" ONIG_WORD "]))"
                                   : "(?:(?<=[" ONIG_WORD "])(?=[" ONIG_WORD "])|(?<![" ONIG_WORD "])(?![" ONIG_WORD "]))";
                break;
            case 'u':
                {
                    int ok = i + 6 <= n;
                    for (size_t k = 2; ok && k < 6; k++) {
                        char h = p[i + k];
                        ok = (h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F');
                    }
                    if (ok) {
                        if (put_s(out, "\\x{") || tk_buf_put(out, p + i + 2, 4) || put_s(out, "}")) goto nomem;
                        i += 6;
                        continue;
                    }
                }
                break;
            default: break;
            }
            if (rep) {
                if (put_s(out, rep)) goto nomem;
                i += 2;
                continue;
            }
            /* Any other escape: copy the backslash and the whole escaped character. */
            size_t l = 1 + tk_utf8_len((unsigned char)e);
            if (i + l > n) l = n - i;
            if (tk_buf_put(out, p + i, l)) goto nomem;
            i += l;
            continue;
        }
        if (in_class) {
            if (c == '[') {
                if (i + 1 < n && p[i + 1] == ':') {   /* POSIX class [:alpha:] */
                    const char *end = memmem(p + i + 2, n - i - 2, ":]", 2);
                    if (!end) bad = 1;
                    else {
                        size_t l = (size_t)(end + 2 - (p + i));
                        if (tk_buf_put(out, p + i, l)) goto nomem;
                        i += l;
                        continue;
                    }
                } else bad = 1;
                if (bad) return moe_fail(MOE_EINPUT, "%s: nested character classes in a regex are not supported", where);
            }
            if (c == '&' && i + 1 < n && p[i + 1] == '&')
                return moe_fail(MOE_EINPUT, "%s: character class intersection (&&) in a regex is not supported", where);
            if (c == ']' && i > class_start) in_class = 0;
        } else if (c == '[') {
            in_class = 1;
            if (tk_buf_put(out, p + i, 1)) goto nomem;
            i++;
            if (i < n && p[i] == '^') { if (tk_buf_put(out, p + i, 1)) goto nomem; i++; }
            class_start = i;   /* a ']' right here is a literal */
            continue;
        } else if (c == '(' && i + 1 < n && p[i + 1] == '?') {
            /* inline flags (?imx-imx) or (?imx-imx:...): Oniguruma's m is PCRE2's s */
            size_t k = i + 2;
            while (k < n && (p[k] == 'i' || p[k] == 'm' || p[k] == 'x' || p[k] == '-')) k++;
            if (k > i + 2 && k < n && (p[k] == ':' || p[k] == ')')) {
                for (size_t q = i; q < k; q++)
                    if (tk_buf_put(out, p[q] == 'm' && q >= i + 2 ? "s" : p + q, 1)) goto nomem;
                i = k;
                continue;
            }
        }
        size_t l = tk_utf8_len((unsigned char)c);
        if (i + l > n) l = n - i;
        if (tk_buf_put(out, p + i, l)) goto nomem;
        i += l;
    }
    if (tk_buf_put(out, "", 0)) goto nomem;
    return MOE_OK;
nomem:
    return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
}

moe_status tk_regex_compile(const char *where, const char *pattern, size_t len, tk_regex *out) {
    out->code = NULL;
    if (moe_utf8_check((const unsigned char *)pattern, len) != len) return moe_fail(MOE_EINPUT, "%s: regex is not valid UTF-8", where);
    tk_buf b = {0};
    moe_status st = translate(where, pattern, len, &b);
    if (st) { tk_buf_free(&b); return st; }
    int err;
    PCRE2_SIZE erroff;
    out->code = pcre2_compile((PCRE2_SPTR)b.p, b.n, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &erroff, NULL);
    tk_buf_free(&b);
    if (!out->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return moe_fail(MOE_EINPUT, "%s: bad regex /%.80s/: %s", where, pattern, (const char *)msg);
    }
    /* falls back to the interpreter if JIT is absent; partial mode for the windows of tk_regex_find_all */
    pcre2_jit_compile(out->code, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
    return MOE_OK;
}

void tk_regex_free(tk_regex *re) {
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

moe_status tk_ctx_init(tk_ctx *c, const char *path) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->md = pcre2_match_data_create(1, NULL);
    c->mctx = pcre2_match_context_create(NULL);
    if (!c->md || !c->mctx) { tk_ctx_free(c); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
    tk_ctx_budget(c, 0);
    return MOE_OK;
}

void tk_ctx_budget(tk_ctx *c, size_t input_bytes) {
    uint64_t per = (uint64_t)input_bytes;
    c->work_total = c->work_left =
        TK_WORK_BASE + (per > (UINT64_MAX / 2) / TK_WORK_PER_BYTE ? UINT64_MAX / 2 : per * TK_WORK_PER_BYTE);
}

moe_status tk_spend(tk_ctx *c, size_t n, const char *what) {
    if ((uint64_t)n <= c->work_left) {
        c->work_left -= n;
        return MOE_OK;
    }
    c->work_left = 0;
    return moe_fail(MOE_EINPUT, "%s: %s exceeds the tokenizer's work budget (%llu bytes for this text: %u per input byte "
                    "plus 64 KiB): its normalizers or decoders multiply the text, or a pattern rescans it at every match",
                    c->path, what, (unsigned long long)c->work_total, TK_WORK_PER_BYTE);
}

void tk_ctx_free(tk_ctx *c) {
    if (c->md) pcre2_match_data_free(c->md);
    if (c->mctx) pcre2_match_context_free(c->mctx);
    if (c->jit) pcre2_jit_stack_free(c->jit);
    free(c->spans.v);
    tk_bpe_cache_free(c->cache);
    free(c->sym);
    free(c->heap);
    tk_buf_free(&c->word);
    free(c->segs);
    memset(c, 0, sizeof *c);
}

/* The leftmost match at or after pos, found through windows of the text so that the work is
 * known and charged. A pcre2_match over the whole rest of the text can do quadratic work in one
 * call (every start position may scan to the end), so the search goes in two parts:
 *  - unanchored, over a window of TK_REGEX_WINDOW bytes with PCRE2_PARTIAL_HARD, which reports a
 *    partial match as soon as an attempt reaches the window's end (a longer match, a lookahead, $
 *    or \b might need more text). A complete match that ends inside the window, or no match at
 *    all, is exactly the answer over the whole text for the start positions in the window;
 *  - where an attempt at position q reached the window's end, q alone (PCRE2_ANCHORED) over a
 *    window that doubles until the attempt no longer needs more text. Positions before q matched
 *    nothing (partial matching stops at the first attempt that reaches the end).
 * Each call is charged the bytes up to its match plus every byte of every doubled window: a
 * normal split pattern decides within a few bytes and costs about one unit per byte of text; a
 * pattern that scans the rest of the text from each position spends the budget after linear work
 * instead of running for quadratic time. *found = 0 when nothing matches. */
#define TK_REGEX_WINDOW 64

static size_t char_end(const char *s, size_t n, size_t end) {
    while (end < n && ((unsigned char)s[end] & 0xc0) == 0x80) end++;
    return end;
}

static moe_status regex_error(tk_ctx *c, int rc) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return moe_fail(MOE_EINPUT, "%s: regex match failed: %s", c->path, (const char *)msg);
}

static moe_status next_match(const tk_regex *re, tk_ctx *c, const char *s, size_t n, size_t pos, int *found,
                             size_t *ms, size_t *me) {
    *found = 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    while (pos <= n) {
        size_t end = char_end(s, n, n - pos <= TK_REGEX_WINDOW ? n : pos + TK_REGEX_WINDOW);
        int whole = end == n;
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, end, pos, PCRE2_NO_UTF_CHECK | (whole ? 0 : PCRE2_PARTIAL_HARD),
                             c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) {
            MOE_TRY(tk_spend(c, end - pos + 1, "regex matching"));
            if (whole) return MOE_OK;
            pos = end;   /* no match starts before the window's end */
            continue;
        }
        if (rc < 0 && rc != PCRE2_ERROR_PARTIAL) return regex_error(c, rc);
        if (rc >= 0 && (whole || ov[1] < end)) {
            MOE_TRY(tk_spend(c, (ov[1] > pos ? ov[1] - pos : 0) + 1, "regex matching"));
            *found = 1, *ms = ov[0], *me = ov[1];
            return MOE_OK;
        }
        /* an attempt at q reached the window's end: decide q alone with more text */
        size_t q = ov[0] < pos ? pos : ov[0];
        MOE_TRY(tk_spend(c, q - pos + 1, "regex matching"));
        size_t win = (end - q) * 2 + 1;
        for (;;) {
            size_t e2 = char_end(s, n, n - q <= win ? n : q + win);
            int all = e2 == n;
            MOE_TRY(tk_spend(c, e2 - q, "regex matching"));
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, e2, q,
                             PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED | (all ? 0 : PCRE2_PARTIAL_HARD), c->md, c->mctx);
            if (rc >= 0 && (all || ov[1] < e2)) {
                *found = 1, *ms = ov[0], *me = ov[1];
                return MOE_OK;
            }
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0 && rc != PCRE2_ERROR_PARTIAL) return regex_error(c, rc);
            win = (e2 - q) * 2;
        }
        if (q >= n) return MOE_OK;
        pos = q + tk_utf8_len((unsigned char)s[q]);   /* nothing starts at q: go on after it */
    }
    return MOE_OK;
}

moe_status tk_regex_find_all(const tk_regex *re, tk_ctx *c, const char *s, size_t n) {
    c->spans.n = 0;
    if (!c->jit) {   /* the default 32 KB JIT stack is too small for long runs of \s+(?!\S) */
        c->jit = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, NULL);
        if (c->jit) pcre2_jit_stack_assign(c->mctx, NULL, c->jit);
    }
    size_t pos = 0;
    while (pos <= n) {
        int found;
        size_t st, en;
        MOE_TRY(next_match(re, c, s, n, pos, &found, &st, &en));
        if (!found) break;
        if (en > st) {
            if (tk_spans_push(&c->spans, st, en)) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
            pos = en;
        } else {   /* an empty match: step over one character, as Oniguruma's iterator does */
            size_t q = st > pos ? st : pos;
            if (q >= n) break;
            pos = q + tk_utf8_len((unsigned char)s[q]);
        }
    }
    return MOE_OK;
}

moe_status tk_literal_find_all(tk_ctx *c, const char *lit, size_t litn, const char *s, size_t n) {
    c->spans.n = 0;
    if (!litn) return MOE_OK;
    size_t pos = 0;
    while (pos + litn <= n) {
        const char *f = memmem(s + pos, n - pos, lit, litn);
        if (!f) break;
        size_t st = (size_t)(f - s);
        if (tk_spans_push(&c->spans, st, st + litn)) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
        pos = st + litn;
    }
    return MOE_OK;
}

/* ---- JSON helpers ---- */

const char *tk_where(char *buf, size_t cap, const char *parent, const char *fmt, ...) {
    int k = snprintf(buf, cap, "%s", parent);
    if (k < 0 || (size_t)k >= cap) return buf;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, cap - (size_t)k, fmt, ap);
    va_end(ap);
    return buf;
}

static const char *kind_of(const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

moe_status tk_json_strdup(const char *where, const cJSON *obj, const char *key, int required, const char *def,
                          char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    const char *s = def;
    if (!v || cJSON_IsNull(v)) {
        if (required) return moe_fail(MOE_EINPUT, "%s: missing field \"%s\"", where, key);
    } else if (!cJSON_IsString(v)) {
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be a string, got %s", where, key, kind_of(v));
    } else {
        s = v->valuestring;
    }
    if (!s) return MOE_OK;
    size_t n = strlen(s);
    if (moe_utf8_check((const unsigned char *)s, n) != n) return moe_fail(MOE_EINPUT, "%s: field \"%s\" is not valid UTF-8", where, key);
    *out = malloc(n + 1);
    if (!*out) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    memcpy(*out, s, n + 1);
    if (len) *len = n;
    return MOE_OK;
}

moe_status tk_json_char(const char *where, const cJSON *obj, const char *key, uint32_t def, uint32_t *out) {
    char *s;
    size_t n;
    *out = def;
    MOE_TRY(tk_json_strdup(where, obj, key, 0, NULL, &s, &n));
    if (!s) return MOE_OK;
    size_t l = n ? tk_utf8_len((unsigned char)s[0]) : 0;
    if (n == 0 || l != n) {
        free(s);
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be exactly one character", where, key);
    }
    *out = tk_utf8_decode(s, &l);
    free(s);
    return MOE_OK;
}

moe_status tk_pattern_parse(const char *where, const cJSON *obj, const char *key, tk_pattern *out) {
    memset(out, 0, sizeof *out);
    char w[TK_WHERE_CAP];
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsObject(p))
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be an object {\"String\": ...} or {\"Regex\": ...}, got %s",
                        where, key, kind_of(p));
    tk_where(w, sizeof w, where, ".%s", key);
    int has_s = cJSON_GetObjectItemCaseSensitive(p, "String") != NULL;
    int has_r = cJSON_GetObjectItemCaseSensitive(p, "Regex") != NULL;
    if (has_s == has_r) return moe_fail(MOE_EINPUT, "%s: needs exactly one of \"String\" or \"Regex\"", w);
    MOE_TRY(tk_json_strdup(w, p, has_s ? "String" : "Regex", 1, NULL, &out->lit, &out->lit_len));
    if (has_r) {
        out->is_regex = 1;
        moe_status st = tk_regex_compile(w, out->lit, out->lit_len, &out->re);
        if (st) { tk_pattern_free(out); return st; }
    }
    return MOE_OK;
}

void tk_pattern_free(tk_pattern *p) {
    free(p->lit);
    tk_regex_free(&p->re);
    memset(p, 0, sizeof *p);
}

moe_status tk_pattern_find_all(const tk_pattern *p, tk_ctx *c, const char *s, size_t n) {
    return p->is_regex ? tk_regex_find_all(&p->re, c, s, n) : tk_literal_find_all(c, p->lit, p->lit_len, s, n);
}
