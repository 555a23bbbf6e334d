/* tokenizer_pretok.c - pre-tokenizers of tokenizer.json: Split, ByteLevel, Metaspace, Digits,
 * Whitespace, WhitespaceSplit, CharDelimiterSplit, Punctuation and Sequence.
 *
 * Every splitting pre-tokenizer reduces to one step, as in tokenizers: find the matches of a
 * pattern (a regex, a literal, or a character predicate where each matching character is its own
 * match), cover the piece with alternating match / non-match segments, optionally invert the
 * flags, then combine segments by the split behavior (Removed, Isolated, MergedWithPrevious,
 * MergedWithNext, Contiguous) and drop empty results. Keeping that single routine is what makes
 * the five behaviors agree with tokenizers on corner cases such as adjacent matches.
 *
 * ByteLevel maps each byte to one printable character (the GPT-2 table), so BPE vocabularies can
 * spell every byte; Metaspace turns spaces into U+2581 and may prepend one. Limit: tokenizers'
 * Metaspace "first" asks whether a piece starts at original offset 0; we track that exactly for
 * pieces cut by added tokens and pre-tokenizers, but a normalizer that inserts text before the
 * first character makes later pieces of that first segment look as if they started later. */
#include "io/tokenizer_internal.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum { P_SPLIT, P_BYTELEVEL, P_METASPACE, P_DIGITS, P_WHITESPACE, P_WSPLIT, P_CHARDELIM, P_PUNCT, P_SEQ };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

struct tk_pretok {
    int kind;
    tk_pattern pat;                   /* Split; Whitespace and ByteLevel use_regex keep their regex here */
    int behavior, invert;
    int add_prefix_space, use_regex;  /* ByteLevel */
    int individual_digits;            /* Digits */
    uint32_t ch;                      /* Metaspace replacement, CharDelimiterSplit delimiter */
    int prepend_scheme, split;        /* Metaspace */
    tk_pretok **sub;
    int nsub;
};

/* The regex crate's \w (Unicode Alphabetic, marks, decimal digits, connector punctuation, joiners). */
#define RUST_WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"

/* The regex tokenizers' ByteLevel uses when use_regex is true (GPT-2). */
static const char k_gpt2_regex[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

uint32_t tk_byte_to_cp(unsigned char b) {
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xa0) return 256u + 33 + (b - 0x7fu);
    return 256u + 67;   /* 0xad */
}

int tk_cp_to_byte(uint32_t cp) {
    if (cp < 256) return tk_byte_to_cp((unsigned char)cp) == cp ? (int)cp : -1;
    if (cp > 256 + 67) return -1;
    uint32_t i = cp - 256;
    if (i <= 32) return (int)i;
    if (i <= 66) return (int)(0x7f + i - 33);
    return 0xad;
}

void tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->nsub; i++) tk_pretok_free(p->sub[i]);
    free(p->sub);
    tk_pattern_free(&p->pat);
    free(p);
}

static moe_status parse_behavior(const char *where, const cJSON *j, int def, int *out) {
    const char *s;
    MOE_TRY(moe_json_str(where, j, "behavior", def < 0, NULL, &s));
    *out = def;
    if (!s) return MOE_OK;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) { *out = i; return MOE_OK; }
    return moe_fail(MOE_EINPUT, "%s: unknown split behavior \"%.60s\"", where, s);
}

static moe_status own_regex(const char *where, const char *re, tk_pattern *p) {
    size_t n = strlen(re);
    p->is_regex = 1;
    if (!(p->lit = malloc(n + 1))) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    memcpy(p->lit, re, n + 1);
    p->lit_len = n;
    return tk_regex_compile(where, re, n, &p->re);
}

static moe_status parse(const char *where, const cJSON *j, int depth, tk_pretok **out) {
    *out = NULL;
    if (depth > 16) return moe_fail(MOE_EINPUT, "%s: pre-tokenizers nested too deeply", where);
    if (!cJSON_IsObject(j)) return moe_fail(MOE_EINPUT, "%s: must be an object or null", where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(t)) return moe_fail(MOE_EINPUT, "%s: field \"type\" must be a string", where);
    const char *type = t->valuestring;
    tk_pretok *p = calloc(1, sizeof *p);
    if (!p) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    moe_status st = MOE_OK;
    if (!strcmp(type, "Split")) {
        p->kind = P_SPLIT;
        st = tk_pattern_parse(where, j, "pattern", &p->pat);
        if (!st) st = parse_behavior(where, j, -1, &p->behavior);
        if (!st) st = moe_json_bool(where, j, "invert", 0, 0, &p->invert);
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = P_BYTELEVEL;
        st = moe_json_bool(where, j, "add_prefix_space", 0, 1, &p->add_prefix_space);
        if (!st) st = moe_json_bool(where, j, "use_regex", 0, 1, &p->use_regex);
        if (!st && p->use_regex) st = own_regex(where, k_gpt2_regex, &p->pat);
    } else if (!strcmp(type, "Metaspace")) {
        p->kind = P_METASPACE;
        st = tk_json_char(where, j, "replacement", 0x2581, &p->ch);
        if (!st) st = moe_json_bool(where, j, "split", 0, 1, &p->split);
        const char *scheme = NULL;
        if (!st) st = moe_json_str(where, j, "prepend_scheme", 0, NULL, &scheme);
        if (!st && scheme) {
            if (!strcmp(scheme, "always")) p->prepend_scheme = PREPEND_ALWAYS;
            else if (!strcmp(scheme, "first")) p->prepend_scheme = PREPEND_FIRST;
            else if (!strcmp(scheme, "never")) p->prepend_scheme = PREPEND_NEVER;
            else st = moe_fail(MOE_EINPUT, "%s: unknown prepend_scheme \"%.40s\"", where, scheme);
        } else if (!st) {   /* files written before prepend_scheme existed */
            int aps;
            st = moe_json_bool(where, j, "add_prefix_space", 0, 1, &aps);
            p->prepend_scheme = aps ? PREPEND_ALWAYS : PREPEND_NEVER;
        }
    } else if (!strcmp(type, "Digits")) {
        p->kind = P_DIGITS;
        st = moe_json_bool(where, j, "individual_digits", 0, 0, &p->individual_digits);
    } else if (!strcmp(type, "Whitespace")) {
        p->kind = P_WHITESPACE;
        /* tokenizers compiles this one with the regex crate, whose \w is not Oniguruma's */
        st = own_regex(where, "[" RUST_WORD "]+|[^" RUST_WORD "\\s]+", &p->pat);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->kind = P_WSPLIT;
    } else if (!strcmp(type, "CharDelimiterSplit")) {
        p->kind = P_CHARDELIM;
        if (!moe_json_has(j, "delimiter")) st = moe_fail(MOE_EINPUT, "%s: missing field \"delimiter\"", where);
        else st = tk_json_char(where, j, "delimiter", 0, &p->ch);
    } else if (!strcmp(type, "Punctuation")) {
        p->kind = P_PUNCT;
        st = parse_behavior(where, j, B_ISOLATED, &p->behavior);
    } else if (!strcmp(type, "Sequence")) {
        p->kind = P_SEQ;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(a)) st = moe_fail(MOE_EINPUT, "%s: field \"pretokenizers\" must be an array", where);
        int n = st ? 0 : cJSON_GetArraySize(a);
        if (n > 0 && !(p->sub = calloc((size_t)n, sizeof *p->sub))) st = moe_fail(MOE_ENOMEM, "%s: out of memory", where);
        for (int i = 0; !st && i < n; i++) {
            char w[TK_WHERE_CAP];
            st = parse(tk_where(w, sizeof w, where, ".pretokenizers[%d]", i), cJSON_GetArrayItem(a, i), depth + 1, &p->sub[i]);
            if (!st) p->nsub++;
        }
    } else {
        st = moe_fail(MOE_EINPUT, "%s: pre-tokenizer type \"%.60s\" is not supported", where, type);
    }
    if (st) { tk_pretok_free(p); return st; }
    *out = p;
    return MOE_OK;
}

moe_status tk_pretok_parse(const char *where, const cJSON *j, tk_pretok **out) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return MOE_OK;
    return parse(where, j, 0, out);
}

/* ---- the split step ---- */

static int seg_push(tk_ctx *c, size_t *n, size_t a, size_t b, int m) {
    if (*n == c->segs_cap) {
        size_t cap = c->segs_cap ? c->segs_cap * 2 : 64;
        tk_seg *v = realloc(c->segs, cap * sizeof *v);
        if (!v) return -1;
        c->segs = v;
        c->segs_cap = cap;
    }
    c->segs[(*n)++] = (tk_seg){a, b, m};
    return 0;
}

/* c->spans holds the matches inside s[0..n); emit the pieces the behavior asks for. */
static moe_status split_by_spans(tk_ctx *c, const char *s, size_t n, int behavior, int invert, int at_start,
                                 tk_list *out) {
    size_t ns = 0, prev = 0;
    for (size_t i = 0; i < c->spans.n; i++) {
        tk_span sp = c->spans.v[i];
        if (prev < sp.start && seg_push(c, &ns, prev, sp.start, 0)) goto nomem;
        if (seg_push(c, &ns, sp.start, sp.end, 1)) goto nomem;
        prev = sp.end;
    }
    if (prev < n && seg_push(c, &ns, prev, n, 0)) goto nomem;
    if (invert)
        for (size_t i = 0; i < ns; i++) c->segs[i].match = !c->segs[i].match;
    /* Combine in place: k counts the segments kept. */
    size_t k = 0;
    int prev_match = 0;
    switch (behavior) {
    case B_REMOVED:
        for (size_t i = 0; i < ns; i++)
            if (!c->segs[i].match) c->segs[k++] = c->segs[i];
        break;
    case B_ISOLATED: k = ns; break;
    case B_MERGED_PREV:
        for (size_t i = 0; i < ns; i++) {
            tk_seg g = c->segs[i];
            if (g.match && !prev_match && k) c->segs[k - 1].end = g.end;
            else c->segs[k++] = g;
            prev_match = g.match;
        }
        break;
    case B_MERGED_NEXT:   /* the mirror image: walk backwards, then the kept run is reversed */
        for (size_t i = ns; i-- > 0;) {
            tk_seg g = c->segs[i];
            if (g.match && !prev_match && k) c->segs[ns - k].start = g.start;
            else c->segs[ns - ++k] = g;
            prev_match = g.match;
        }
        if (k) memmove(c->segs, c->segs + ns - k, k * sizeof *c->segs);
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < ns; i++) {
            tk_seg g = c->segs[i];
            if (g.match == prev_match && k) c->segs[k - 1].end = g.end;
            else c->segs[k++] = g;
            prev_match = g.match;
        }
        break;
    }
    for (size_t i = 0; i < k; i++) {
        tk_seg g = c->segs[i];
        if (g.end > g.start && tk_list_push(out, s + g.start, g.end - g.start, -1, at_start && g.start == 0)) goto nomem;
    }
    return MOE_OK;
nomem:
    return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
}

static int is_punct(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2f) || (cp >= 0x3a && cp <= 0x40) || (cp >= 0x5b && cp <= 0x60) ||
                          (cp >= 0x7b && cp <= 0x7e);
    int cat = utf8proc_category((utf8proc_int32_t)cp);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

static int is_numeric(uint32_t cp) {
    int cat = utf8proc_category((utf8proc_int32_t)cp);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

/* Character-predicate patterns: each matching character is one match. */
static moe_status char_spans(const tk_pretok *p, tk_ctx *c, const char *s, size_t n) {
    c->spans.n = 0;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = tk_utf8_decode(s + i, &l);
        int m = p->kind == P_DIGITS ? is_numeric(cp) : p->kind == P_PUNCT ? is_punct(cp)
              : p->kind == P_WSPLIT ? tk_is_white_space(cp) : cp == p->ch;
        if (m && tk_spans_push(&c->spans, i, i + l)) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
        i += l;
    }
    return MOE_OK;
}

static int put_cp(tk_buf *b, uint32_t cp) {
    char e[4];
    return tk_buf_put(b, e, tk_utf8_encode(cp, e));
}

static moe_status byte_level(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, const char *s, tk_list *out) {
    const char *src = s;
    size_t n = pc->len;
    tk_list tmp = {0};
    moe_status st = MOE_OK;
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
        if (tk_list_open(&tmp, -1, pc->at_start) || tk_buf_put(&tmp.text, " ", 1) || tk_buf_put(&tmp.text, s, n)) goto nomem;
        tk_list_close(&tmp);
        src = tmp.text.p;
        n = tmp.text.n;
    }
    size_t first = out->n;
    if (p->use_regex) {
        st = tk_regex_find_all(&p->pat.re, c, src, n);
        if (!st) st = split_by_spans(c, src, n, B_ISOLATED, 0, pc->at_start, out);
    } else if (tk_list_push(out, src, n, -1, pc->at_start)) goto nomem;
    tk_list_free(&tmp);
    if (st) return st;
    /* Map the new pieces' bytes in place at the end of out: rewrite them into fresh space. */
    for (size_t i = first; i < out->n; i++) {
        size_t off = out->v[i].off, len = out->v[i].len;
        if (tk_list_open(out, -1, out->v[i].at_start)) goto nomem;
        for (size_t k = 0; k < len; k++)
            if (put_cp(&out->text, tk_byte_to_cp((unsigned char)out->text.p[off + k]))) goto nomem;
        tk_list_close(out);
        out->v[i] = out->v[--out->n];
    }
    return MOE_OK;
nomem:
    tk_list_free(&tmp);
    return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
}

static moe_status metaspace(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, const char *s, tk_list *out) {
    char rep[4];
    size_t rl = tk_utf8_encode(p->ch, rep);
    tk_buf b = {0};
    /* tokenizers tests starts_with after the replacement, so a leading space counts as one */
    if ((p->prepend_scheme == PREPEND_ALWAYS || (p->prepend_scheme == PREPEND_FIRST && pc->at_start)) &&
        !(pc->len && (s[0] == ' ' || (pc->len >= rl && !memcmp(s, rep, rl)))))
        if (tk_buf_put(&b, rep, rl)) goto nomem;
    for (size_t i = 0; i < pc->len; i++)
        if (s[i] == ' ' ? tk_buf_put(&b, rep, rl) : tk_buf_put(&b, s + i, 1)) goto nomem;
    moe_status st = MOE_OK;
    if (p->split) {
        st = tk_literal_find_all(c, rep, rl, b.p, b.n);
        if (!st) st = split_by_spans(c, b.p, b.n, B_MERGED_NEXT, 0, pc->at_start, out);
    } else if (b.n && tk_list_push(out, b.p, b.n, -1, pc->at_start)) goto nomem;
    tk_buf_free(&b);
    return st;
nomem:
    tk_buf_free(&b);
    return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
}

static moe_status apply_one(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, const char *s, tk_list *out) {
    switch (p->kind) {
    case P_SPLIT:
        MOE_TRY(tk_pattern_find_all(&p->pat, c, s, pc->len));
        return split_by_spans(c, s, pc->len, p->behavior, p->invert, pc->at_start, out);
    case P_WHITESPACE:
        MOE_TRY(tk_regex_find_all(&p->pat.re, c, s, pc->len));
        return split_by_spans(c, s, pc->len, B_REMOVED, 1, pc->at_start, out);
    case P_DIGITS:
        MOE_TRY(char_spans(p, c, s, pc->len));
        return split_by_spans(c, s, pc->len, p->individual_digits ? B_ISOLATED : B_CONTIGUOUS, 0, pc->at_start, out);
    case P_PUNCT:
        MOE_TRY(char_spans(p, c, s, pc->len));
        return split_by_spans(c, s, pc->len, p->behavior, 0, pc->at_start, out);
    case P_WSPLIT:
    case P_CHARDELIM:
        MOE_TRY(char_spans(p, c, s, pc->len));
        return split_by_spans(c, s, pc->len, B_REMOVED, 0, pc->at_start, out);
    case P_BYTELEVEL: return byte_level(p, c, pc, s, out);
    case P_METASPACE: return metaspace(p, c, pc, s, out);
    }
    return moe_fail(MOE_EINTERNAL, "%s: bad pre-tokenizer kind", c->path);
}

moe_status tk_pretok_apply(const tk_pretok *p, tk_ctx *c, const tk_list *in, tk_list *out) {
    tk_list_clear(out);
    if (p->kind == P_SEQ) {
        tk_list a = {0}, b = {0};
        const tk_list *cur = in;
        moe_status st = MOE_OK;
        for (int i = 0; !st && i < p->nsub; i++) {
            tk_list *dst = i == p->nsub - 1 ? out : (cur == &a ? &b : &a);
            st = tk_pretok_apply(p->sub[i], c, cur, dst);
            cur = dst;
        }
        if (!st && p->nsub == 0)
            for (size_t i = 0; !st && i < in->n; i++)
                if (tk_list_push(out, tk_piece_str(in, i), in->v[i].len, in->v[i].id, in->v[i].at_start))
                    st = moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
        tk_list_free(&a);
        tk_list_free(&b);
        return st;
    }
    for (size_t i = 0; i < in->n; i++) {
        const tk_piece *pc = &in->v[i];
        if (pc->id >= 0) {
            if (tk_list_push(out, tk_piece_str(in, i), pc->len, pc->id, pc->at_start))
                return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
            continue;
        }
        MOE_TRY(apply_one(p, c, pc, tk_piece_str(in, i), out));
    }
    return MOE_OK;
}
