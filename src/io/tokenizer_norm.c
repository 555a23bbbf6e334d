/* tokenizer_norm.c - normalizers of tokenizer.json: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents,
 * Strip, Prepend, Replace and Sequence.
 *
 * Unicode normalization comes from utf8proc (a maintained library, not tables of our own). It may
 * trail or lead the Unicode version of Rust's unicode-normalization crate by a release; only
 * characters assigned in between could differ.
 *
 * tokenizers normalizes each piece of text left between added tokens on its own, so an empty piece
 * stays empty (Prepend adds nothing to an empty string) and the caller never joins pieces first.
 * Offsets are not tracked: nothing we produce needs them. Every step's output is charged to the
 * call's work budget (tokenizer_internal.h), Replace as it writes, so that a chain of growing
 * Replace steps stops at the budget instead of doubling without end. */
#include "io/tokenizer_internal.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

enum { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_STRIP_ACCENTS, N_STRIP, N_PREPEND, N_REPLACE, N_SEQ };

struct tk_norm {
    int kind;
    char *text;                /* Prepend: prefix; Replace: content */
    size_t text_len;
    tk_pattern pat;            /* Replace */
    int left, right;           /* Strip */
    tk_norm **sub;             /* Sequence */
    int nsub;
};

void tk_norm_free(tk_norm *nm) {
    if (!nm) return;
    for (int i = 0; i < nm->nsub; i++) tk_norm_free(nm->sub[i]);
    free(nm->sub);
    free(nm->text);
    tk_pattern_free(&nm->pat);
    free(nm);
}

static moe_status parse(const char *where, const cJSON *j, int depth, tk_norm **out) {
    *out = NULL;
    if (depth > 16) return moe_fail(MOE_EINPUT, "%s: normalizers nested too deeply", where);
    if (!cJSON_IsObject(j)) return moe_fail(MOE_EINPUT, "%s: must be an object or null", where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(t)) return moe_fail(MOE_EINPUT, "%s: field \"type\" must be a string", where);
    const char *type = t->valuestring;
    tk_norm *nm = calloc(1, sizeof *nm);
    if (!nm) return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    moe_status st = MOE_OK;
    if (!strcmp(type, "NFC")) nm->kind = N_NFC;
    else if (!strcmp(type, "NFD")) nm->kind = N_NFD;
    else if (!strcmp(type, "NFKC")) nm->kind = N_NFKC;
    else if (!strcmp(type, "NFKD")) nm->kind = N_NFKD;
    else if (!strcmp(type, "Lowercase")) nm->kind = N_LOWER;
    else if (!strcmp(type, "StripAccents")) nm->kind = N_STRIP_ACCENTS;
    else if (!strcmp(type, "Strip")) {
        nm->kind = N_STRIP;
        st = moe_json_bool(where, j, "strip_left", 0, 1, &nm->left);
        if (!st) st = moe_json_bool(where, j, "strip_right", 0, 1, &nm->right);
    } else if (!strcmp(type, "Prepend")) {
        nm->kind = N_PREPEND;
        st = tk_json_strdup(where, j, "prepend", 1, NULL, &nm->text, &nm->text_len);
    } else if (!strcmp(type, "Replace")) {
        nm->kind = N_REPLACE;
        st = tk_pattern_parse(where, j, "pattern", &nm->pat);
        if (!st) st = tk_json_strdup(where, j, "content", 1, NULL, &nm->text, &nm->text_len);
    } else if (!strcmp(type, "Sequence")) {
        nm->kind = N_SEQ;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(a)) st = moe_fail(MOE_EINPUT, "%s: field \"normalizers\" must be an array", where);
        int n = st ? 0 : cJSON_GetArraySize(a);
        if (n > 0 && !(nm->sub = calloc((size_t)n, sizeof *nm->sub))) st = moe_fail(MOE_ENOMEM, "%s: out of memory", where);
        for (int i = 0; !st && i < n; i++) {
            char w[TK_WHERE_CAP];
            st = parse(tk_where(w, sizeof w, where, ".normalizers[%d]", i), cJSON_GetArrayItem(a, i), depth + 1, &nm->sub[i]);
            if (!st) nm->nsub++;
        }
    } else {
        st = moe_fail(MOE_EINPUT, "%s: normalizer type \"%.60s\" is not supported", where, type);
    }
    if (st) { tk_norm_free(nm); return st; }
    *out = nm;
    return MOE_OK;
}

moe_status tk_norm_parse(const char *where, const cJSON *j, tk_norm **out) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return MOE_OK;
    return parse(where, j, 0, out);
}

static moe_status unicode_map(tk_ctx *c, const char *s, size_t n, int options, tk_buf *out) {
    if (!n) return MOE_OK;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)options);
    if (r < 0) return moe_fail(MOE_EINPUT, "%s: Unicode normalization failed: %s", c->path, utf8proc_errmsg(r));
    int bad = tk_buf_put(out, dst, (size_t)r);
    free(dst);
    return bad ? moe_fail(MOE_ENOMEM, "%s: out of memory", c->path) : MOE_OK;
}

/* Per character, as tokenizers does (char::to_lowercase, no final-sigma context). utf8proc gives
 * the simple mapping; the one character whose full lowercase is two characters is U+0130. */
static int lowercase(const char *s, size_t n, tk_buf *out) {
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = tk_utf8_decode(s + i, &l);
        char enc[8];
        size_t k;
        if (cp == 0x130) { memcpy(enc, "i\xcc\x87", 3); k = 3; }
        else k = tk_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), enc);
        if (tk_buf_put(out, enc, k)) return -1;
        i += l;
    }
    return 0;
}

static int strip_accents(const char *s, size_t n, tk_buf *out) {
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = tk_utf8_decode(s + i, &l);
        int cat = utf8proc_category((utf8proc_int32_t)cp);   /* tokenizers drops every combining mark */
        if (cat != UTF8PROC_CATEGORY_MN && cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME &&
            tk_buf_put(out, s + i, l))
            return -1;
        i += l;
    }
    return 0;
}

static int strip(const char *s, size_t n, int left, int right, tk_buf *out) {
    size_t a = 0, b = n, l;
    while (left && a < b && tk_is_white_space(tk_utf8_decode(s + a, &l))) a += l;
    while (right && b > a) {
        size_t p = b - 1;
        while (p > a && ((unsigned char)s[p] & 0xc0) == 0x80) p--;
        if (!tk_is_white_space(tk_utf8_decode(s + p, &l))) break;
        b = p;
    }
    return tk_buf_put(out, s + a, b - a);
}

static moe_status replace(const tk_norm *nm, tk_ctx *c, const char *s, size_t n, tk_buf *out) {
    MOE_TRY(tk_pattern_find_all(&nm->pat, c, s, n));
    size_t prev = 0;
    for (size_t i = 0; i < c->spans.n; i++) {
        tk_span sp = c->spans.v[i];
        MOE_TRY(tk_spend(c, sp.start - prev + nm->text_len, "normalizer output"));
        if (tk_buf_put(out, s + prev, sp.start - prev) || tk_buf_put(out, nm->text, nm->text_len)) goto nomem;
        prev = sp.end;
    }
    MOE_TRY(tk_spend(c, n - prev, "normalizer output"));
    if (tk_buf_put(out, s + prev, n - prev)) goto nomem;
    return MOE_OK;
nomem:
    return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
}

moe_status tk_norm_apply(const tk_norm *nm, tk_ctx *c, const char *s, size_t n, tk_buf *out) {
    out->n = 0;
    if (tk_buf_put(out, "", 0)) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
    int bad = 0;
    moe_status st = MOE_OK;
    switch (nm->kind) {   /* the steps other than Replace grow the text by a bounded factor: charged after */
    case N_NFC: st = unicode_map(c, s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out); break;
    case N_NFD: st = unicode_map(c, s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out); break;
    case N_NFKC: st = unicode_map(c, s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out); break;
    case N_NFKD: st = unicode_map(c, s, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out); break;
    case N_LOWER: bad = lowercase(s, n, out); break;
    case N_STRIP_ACCENTS: bad = strip_accents(s, n, out); break;
    case N_STRIP: bad = strip(s, n, nm->left, nm->right, out); break;
    case N_PREPEND:   /* charged first: the prefix may be long */
        if (n) MOE_TRY(tk_spend(c, nm->text_len + n, "normalizer output"));
        bad = n && (tk_buf_put(out, nm->text, nm->text_len) || tk_buf_put(out, s, n));
        return bad ? moe_fail(MOE_ENOMEM, "%s: out of memory", c->path) : MOE_OK;
    case N_REPLACE: return replace(nm, c, s, n, out);   /* charges as it writes */
    case N_SEQ: {
        tk_buf tmp = {0};
        if (tk_buf_put(out, s, n)) { bad = 1; break; }
        for (int i = 0; !st && i < nm->nsub; i++) {
            st = tk_norm_apply(nm->sub[i], c, out->p, out->n, &tmp);
            tk_buf t = *out; *out = tmp; tmp = t;
        }
        tk_buf_free(&tmp);
        return st;
    }
    }
    if (bad) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
    return st ? st : tk_spend(c, out->n, "normalizer output");
}
