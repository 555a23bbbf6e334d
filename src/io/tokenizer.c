/* tokenizer.c - loading tokenizer.json, added tokens, and the public tokenizer API.
 *
 * Added tokens follow tokenizers' AddedVocabulary, whose quirks decide ids:
 * - The "id" written in the file is not used. A token whose content is in the model vocab takes
 *   that id; a new one takes max(added ids) + 1, or the model's entry count for the first one.
 * - Tokens with normalized=false are cut from the raw text; each remaining piece is normalized on
 *   its own; then tokens with normalized=true (their content normalized too) are cut from that.
 * - Each cut takes leftmost-longest, non-overlapping matches (an Aho-Corasick scan there, a byte
 *   trie here), and only then drops matches that break single_word, and widens lstrip / rstrip
 *   matches over Unicode whitespace. Specials are matched like any added token (tokenizers'
 *   default encode_special_tokens=false); "special" only matters for skip_special in decode.
 * BOS/EOS come from tokenizer_config.json beside the file when present, else from a
 * TemplateProcessing post-processor; encoding never adds them (add_special_tokens=False).
 * A GGUF model file stands for the tokenizer.json beside it: moe does not build tokenizers from a
 * GGUF file's tokenizer.ggml.* tables (docs/GGUF.md). */
#include "io/tokenizer_internal.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TOKENIZER_FILE ((size_t)1 << 30)
#define MAX_CONFIG_FILE ((size_t)64 << 20)

typedef struct added {
    char *content, *match;            /* match: what the trie looks for (normalized content if normalized) */
    size_t len, match_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} added;

/* A byte trie over added-token strings; edges in one hash table keyed by (node, byte). */
typedef struct trie {
    uint64_t *key;                    /* node * 256 + byte + 1; 0 = empty */
    int32_t *child;
    size_t cap, used;
    int32_t *term;                    /* [nodes] index of the token ending here, or -1 */
    size_t nodes, term_cap;
    unsigned char first[256];         /* bytes that can start a match */
} trie;

struct moe_tokenizer {
    char *path;
    tk_bpe bpe;
    tk_norm *norm;
    tk_pretok *pretok;
    tk_dec *dec;
    added *tok;
    size_t n_tok;
    moe_strmap tok_by_content;        /* content -> index in tok */
    trie raw, normed;
    int32_t *added_of_id;             /* [vocab_size] index in tok, or -1; NULL when the ids are sparse */
    int32_t *added_by_id;             /* sparse ids: indices in tok sorted by id */
    tk_regex word_re;                 /* word characters for single_word (only if needed) */
    moe_tokenizer_info info;
};

/* ---- the trie ---- */

static void trie_free(trie *t) { free(t->key); free(t->child); free(t->term); memset(t, 0, sizeof *t); }

static int32_t trie_get(const trie *t, int32_t node, unsigned char b) {
    if (!t->cap) return -1;
    uint64_t k = (uint64_t)node * 256 + b + 1;
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 17) & (t->cap - 1);
    while (t->key[i]) {
        if (t->key[i] == k) return t->child[i];
        i = (i + 1) & (t->cap - 1);
    }
    return -1;
}

static int trie_grow(trie *t) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    uint64_t *key = calloc(cap, sizeof *key);
    int32_t *child = malloc(cap * sizeof *child);
    if (!key || !child) { free(key); free(child); return -1; }
    for (size_t j = 0; j < t->cap; j++)
        if (t->key[j]) {
            size_t i = (size_t)((t->key[j] * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
            while (key[i]) i = (i + 1) & (cap - 1);
            key[i] = t->key[j];
            child[i] = t->child[j];
        }
    free(t->key); free(t->child);
    t->key = key; t->child = child; t->cap = cap;
    return 0;
}

static int32_t trie_node(trie *t) {
    if (t->nodes == t->term_cap) {
        size_t c = t->term_cap ? t->term_cap * 2 : 64;
        int32_t *v = realloc(t->term, c * sizeof *v);
        if (!v) return -1;
        t->term = v;
        t->term_cap = c;
    }
    t->term[t->nodes] = -1;
    return (int32_t)t->nodes++;
}

/* Insert s; the first token inserted with a given string keeps it. */
static int trie_add(trie *t, const char *s, size_t n, int32_t tok) {
    if (!t->nodes && trie_node(t) < 0) return -1;
    int32_t node = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char b = (unsigned char)s[k];
        int32_t c = trie_get(t, node, b);
        if (c < 0) {
            if ((t->used + 1) * 2 > t->cap && trie_grow(t)) return -1;
            if ((c = trie_node(t)) < 0) return -1;
            uint64_t key = (uint64_t)node * 256 + b + 1;
            size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (t->cap - 1);
            while (t->key[i]) i = (i + 1) & (t->cap - 1);
            t->key[i] = key;
            t->child[i] = c;
            t->used++;
        }
        node = c;
    }
    t->first[(unsigned char)s[0]] = 1;
    if (t->term[node] < 0) t->term[node] = tok;
    return 0;
}

/* ---- cutting added tokens out of text ---- */

static int is_word_char(const moe_tokenizer *t, tk_ctx *c, const char *s, size_t n, size_t at) {
    int rc = pcre2_match(t->word_re.code, (PCRE2_SPTR)s, n, at, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, c->md, c->mctx);
    return rc >= 0;
}

static size_t prev_char(const char *s, size_t i) {
    do i--; while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80);
    return i;
}

/* Split s into pieces of text and added tokens (leftmost-longest trie matches), appending to out. */
static moe_status split_added(const moe_tokenizer *t, const trie *tr, tk_ctx *c, const char *s, size_t n, int at_start,
                              tk_list *out) {
    if (!n) return MOE_OK;   /* tokenizers drops empty pieces */
    if (!tr->nodes) return tk_list_push(out, s, n, -1, at_start) ? moe_fail(MOE_ENOMEM, "%s: out of memory", t->path) : MOE_OK;
    /* All matches first, as tokenizers does, then the single_word / strip rules on that list. */
    c->spans.n = 0;
    tk_ids toks = {0};
    for (size_t i = 0; i < n;) {
        if (!tr->first[(unsigned char)s[i]]) { i++; continue; }
        int32_t node = 0, best_tok = -1;
        size_t best = 0;
        for (size_t j = i; j < n; j++) {
            node = trie_get(tr, node, (unsigned char)s[j]);
            if (node < 0) break;
            if (tr->term[node] >= 0) { best = j + 1; best_tok = tr->term[node]; }
        }
        if (best_tok < 0) { i++; continue; }
        if (tk_spans_push(&c->spans, i, best) || tk_ids_push(&toks, best_tok)) goto nomem;
        i = best;
    }
    size_t prev = 0;
    for (size_t m = 0; m < c->spans.n; m++) {
        size_t st = c->spans.v[m].start, en = c->spans.v[m].end;
        const added *a = &t->tok[toks.v[m]];
        if (a->single_word) {
            int left_ok = st == 0 || !is_word_char(t, c, s, n, prev_char(s, st));
            int right_ok = en == n || !is_word_char(t, c, s, n, en);
            if (!left_ok || !right_ok) continue;
        }
        if (a->lstrip) {
            size_t k = st, l;
            while (k > 0) {
                size_t p = prev_char(s, k);
                if (!tk_is_white_space(tk_utf8_decode(s + p, &l))) break;
                k = p;
            }
            st = k > prev ? k : prev;
        }
        if (a->rstrip) {
            size_t l;
            while (en < n && tk_is_white_space(tk_utf8_decode(s + en, &l))) en += l;
        }
        if (st < prev) st = prev;   /* a previous rstrip already took these bytes */
        if (prev < st && tk_list_push(out, s + prev, st - prev, -1, at_start && prev == 0)) goto nomem;
        if (tk_list_push(out, s + st, en - st, a->id, at_start && st == 0)) goto nomem;
        prev = en;
    }
    if (prev < n && tk_list_push(out, s + prev, n - prev, -1, at_start && prev == 0)) goto nomem;
    free(toks.v);
    return MOE_OK;
nomem:
    free(toks.v);
    return moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
}

/* ---- loading ---- */

void moe_tokenizer_free(moe_tokenizer *t) {
    if (!t) return;
    tk_bpe_free(&t->bpe);
    tk_norm_free(t->norm);
    tk_pretok_free(t->pretok);
    tk_dec_free(t->dec);
    for (size_t i = 0; i < t->n_tok; i++) {
        if (t->tok[i].match != t->tok[i].content) free(t->tok[i].match);
        free(t->tok[i].content);
    }
    free(t->tok);
    moe_strmap_free(&t->tok_by_content);
    trie_free(&t->raw);
    trie_free(&t->normed);
    free(t->added_of_id);
    free(t->added_by_id);
    tk_regex_free(&t->word_re);
    free(t->path);
    free(t);
}

static moe_status parse_added(moe_tokenizer *t, const cJSON *arr) {
    const char *path = t->path;
    char w[TK_WHERE_CAP];
    if (!arr || cJSON_IsNull(arr)) return MOE_OK;
    if (!cJSON_IsArray(arr)) return moe_fail(MOE_EINPUT, "%s: field \"added_tokens\" must be an array", path);
    int n = cJSON_GetArraySize(arr);
    if (n > (1 << 22)) return moe_fail(MOE_EINPUT, "%s: %d added tokens is too many", path, n);
    if (n && !(t->tok = calloc((size_t)n, sizeof *t->tok))) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    if (moe_strmap_init(&t->tok_by_content, (size_t)n)) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    int64_t max_added = -1;
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        tk_where(w, sizeof w, path, ": added_tokens[%d]", i);
        if (!cJSON_IsObject(e)) return moe_fail(MOE_EINPUT, "%s: must be an object", w);
        added a = {0};
        MOE_TRY(moe_json_bool(w, e, "special", 0, 0, &a.special));
        MOE_TRY(moe_json_bool(w, e, "lstrip", 0, 0, &a.lstrip));
        MOE_TRY(moe_json_bool(w, e, "rstrip", 0, 0, &a.rstrip));
        MOE_TRY(moe_json_bool(w, e, "single_word", 0, 0, &a.single_word));
        MOE_TRY(moe_json_bool(w, e, "normalized", 0, !a.special, &a.normalized));
        int64_t file_id;   /* checked for type only: tokenizers assigns ids itself */
        MOE_TRY(moe_json_int(w, e, "id", 0, 0, 0, INT32_MAX, &file_id));
        MOE_TRY(tk_json_strdup(w, e, "content", 1, NULL, &a.content, &a.len));
        if (a.len == 0) { free(a.content); continue; }   /* tokenizers ignores empty tokens */
        int prev = moe_strmap_get(&t->tok_by_content, a.content, a.len);
        if (prev >= 0) {   /* the same content again: later flags win, "special" accumulates */
            added *p = &t->tok[prev];
            p->lstrip = a.lstrip; p->rstrip = a.rstrip; p->single_word = a.single_word;
            p->special |= a.special;
            free(a.content);
            continue;
        }
        int32_t id = tk_bpe_token_id(&t->bpe, a.content, a.len);
        if (id < 0) {
            int64_t nv = (int64_t)t->bpe.n_vocab;
            id = (int32_t)(max_added < 0 ? nv : (max_added >= nv || nv == 0) ? max_added + 1 : nv);
        }
        if (id > max_added) max_added = id;
        a.id = id;
        t->tok[t->n_tok] = a;
        if (moe_strmap_put(&t->tok_by_content, t->tok[t->n_tok].content, a.len, (int)t->n_tok) < 0)
            return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
        t->n_tok++;
    }
    return MOE_OK;
}

static moe_status build_tries(moe_tokenizer *t) {
    tk_ctx c;
    MOE_TRY(tk_ctx_init(&c, t->path));
    moe_status st = MOE_OK;
    int need_word_re = 0;
    /* tokenizers lists special tokens first, then the others; with unique contents the order only
     * decides nothing, but keep it anyway. */
    for (int pass = 0; pass < 2 && !st; pass++)
        for (size_t i = 0; i < t->n_tok && !st; i++) {
            added *a = &t->tok[i];
            if ((pass == 0) != (a->special != 0)) continue;
            need_word_re |= a->single_word;
            a->match = a->content;
            a->match_len = a->len;
            if (a->normalized && t->norm) {
                tk_buf b = {0};
                tk_ctx_budget(&c, a->len);
                st = tk_norm_apply(t->norm, &c, a->content, a->len, &b);
                if (st) { tk_buf_free(&b); break; }
                if (!b.n) { tk_buf_free(&b); continue; }   /* normalized away: can never match */
                a->match = b.p;
                a->match_len = b.n;
            }
            if (trie_add(a->normalized ? &t->normed : &t->raw, a->match, a->match_len, (int32_t)i))
                st = moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
        }
    tk_ctx_free(&c);
    if (!st && need_word_re) {
        static const char re[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";
        st = tk_regex_compile(t->path, re, sizeof re - 1, &t->word_re);
    }
    return st;
}

static int32_t lookup_token(const moe_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    int k = moe_strmap_get(&t->tok_by_content, s, n);
    return k >= 0 ? t->tok[k].id : tk_bpe_token_id(&t->bpe, s, n);
}

/* "bos_token": "<s>" or {"content": "<s>", ...} */
static moe_status config_token(const char *path, const cJSON *cfg, const char *key, const moe_tokenizer *t, int32_t *id) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return MOE_OK;
    const char *s = NULL;
    if (cJSON_IsString(v)) s = v->valuestring;
    else if (cJSON_IsObject(v)) MOE_TRY(moe_json_str(path, v, "content", 1, NULL, &s));
    else return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be a string or an object with \"content\"", path, key);
    *id = lookup_token(t, s);
    return MOE_OK;
}

static moe_status read_specials(moe_tokenizer *t, const cJSON *root, const char *cfg_path) {
    moe_tokenizer_info *in = &t->info;
    in->bos_id = in->eos_id = -1;
    /* TemplateProcessing: a SpecialToken before $A is BOS, one after it is EOS. */
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *ty = pp ? cJSON_GetObjectItemCaseSensitive(pp, "type") : NULL;
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
        int seen_seq = 0;
        for (const cJSON *e = cJSON_IsArray(single) ? single->child : NULL; e; e = e->next) {
            if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) { seen_seq = 1; continue; }
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            const cJSON *name = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
            if (!cJSON_IsString(name)) continue;
            int32_t id = lookup_token(t, name->valuestring);
            if (!seen_seq) { in->bos_id = id; in->add_bos = id >= 0; }
            else { in->eos_id = id; in->add_eos = id >= 0; }
        }
    }
    struct stat sb;
    if (!cfg_path || stat(cfg_path, &sb) != 0) return MOE_OK;
    cJSON *cfg;
    MOE_TRY(moe_json_parse_file(cfg_path, MAX_CONFIG_FILE, &cfg));
    moe_status st = MOE_OK;
    if (!cJSON_IsObject(cfg)) st = moe_fail(MOE_EINPUT, "%s: must be a JSON object", cfg_path);
    if (!st) st = config_token(cfg_path, cfg, "bos_token", t, &in->bos_id);
    if (!st) st = config_token(cfg_path, cfg, "eos_token", t, &in->eos_id);
    if (!st) st = moe_json_bool(cfg_path, cfg, "add_bos_token", 0, in->add_bos, &in->add_bos);
    if (!st) st = moe_json_bool(cfg_path, cfg, "add_eos_token", 0, in->add_eos, &in->add_eos);
    if (in->bos_id < 0) in->add_bos = 0;
    if (in->eos_id < 0) in->add_eos = 0;
    cJSON_Delete(cfg);
    return st;
}

static int by_added_id(const void *a, const void *b, void *ctx) {
    const added *tok = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b, x = tok[i].id, y = tok[j].id;
    return x != y ? (x < y ? -1 : 1) : (i > j ? -1 : i < j);   /* equal ids: the later token first, as the dense table keeps it */
}

/* The added token with this id (index in t->tok), or -1. */
static int32_t added_index(const moe_tokenizer *t, int32_t id) {
    if (t->added_of_id) return t->added_of_id[id];
    size_t lo = 0, hi = t->n_tok;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->tok[t->added_by_id[mid]].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->n_tok && t->tok[t->added_by_id[lo]].id == id ? t->added_by_id[lo] : -1;
}

static moe_status load(moe_tokenizer *t, const cJSON *root, const char *cfg_path) {
    const char *path = t->path;
    char w[TK_WHERE_CAP];
    moe_status st = MOE_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(root)) st = moe_fail(MOE_EINPUT, "%s: must be a JSON object", path);
    else if (!cJSON_IsObject(model)) st = moe_fail(MOE_EINPUT, "%s: field \"model\" must be an object", path);
    if (!st) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(model, "type");
        if (ty && !cJSON_IsString(ty)) st = moe_fail(MOE_EINPUT, "%s: model.type must be a string", path);
        else if (ty && strcmp(ty->valuestring, "BPE"))
            st = moe_fail(MOE_EINPUT, "%s: model type \"%.40s\" is not supported (only BPE)", path, ty->valuestring);
        else if (!ty && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
            st = moe_fail(MOE_EINPUT, "%s: model has no \"type\" and is not a BPE model", path);
    }
    if (!st) st = tk_bpe_parse(tk_where(w, sizeof w, path, ": model"), model, &t->bpe);
    if (!st) st = tk_norm_parse(tk_where(w, sizeof w, path, ": normalizer"), cJSON_GetObjectItemCaseSensitive(root, "normalizer"), &t->norm);
    if (!st) st = tk_pretok_parse(tk_where(w, sizeof w, path, ": pre_tokenizer"), cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &t->pretok);
    if (!st) st = tk_dec_parse(tk_where(w, sizeof w, path, ": decoder"), cJSON_GetObjectItemCaseSensitive(root, "decoder"), &t->dec);
    if (!st) st = parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
    if (!st) st = build_tries(t);
    if (!st) {
        int32_t vs = t->bpe.n_ids;
        for (size_t i = 0; i < t->n_tok; i++)
            if (t->tok[i].id >= vs) vs = t->tok[i].id + 1;
        t->info.vocab_size = vs;
        /* memory in proportion to the tokens the file holds, not to its largest id */
        if (tk_dense_ok(vs, t->bpe.n_vocab + t->n_tok)) {
            if (!(t->added_of_id = malloc(sizeof(int32_t) * ((size_t)vs + 1)))) st = moe_fail(MOE_ENOMEM, "%s: out of memory", path);
            else {
                for (int32_t i = 0; i < vs; i++) t->added_of_id[i] = -1;
                for (size_t i = 0; i < t->n_tok; i++) t->added_of_id[t->tok[i].id] = (int32_t)i;
            }
        } else if (!(t->added_by_id = malloc(sizeof(int32_t) * (t->n_tok + 1)))) {
            st = moe_fail(MOE_ENOMEM, "%s: out of memory", path);
        } else {   /* added ids are distinct: each content has its own id */
            for (size_t i = 0; i < t->n_tok; i++) t->added_by_id[i] = (int32_t)i;
            qsort_r(t->added_by_id, t->n_tok, sizeof *t->added_by_id, by_added_id, t->tok);
        }
    }
    if (!st) st = read_specials(t, root, cfg_path);
    return st;
}

moe_status tk_tokenizer_load_mem(const char *name, const char *buf, size_t len, moe_tokenizer **out) {
    *out = NULL;
    moe_tokenizer *t = calloc(1, sizeof *t);
    if (!t || !(t->path = malloc(strlen(name) + 1))) { free(t); return moe_fail(MOE_ENOMEM, "%s: out of memory", name); }
    memcpy(t->path, name, strlen(name) + 1);
    cJSON *root;
    moe_status st = moe_json_parse(name, buf, len, &root);
    if (!st) {
        st = load(t, root, NULL);
        cJSON_Delete(root);
    }
    if (st) { moe_tokenizer_free(t); return st; }
    *out = t;
    return MOE_OK;
}

moe_status moe_tokenizer_load(const char *path, moe_tokenizer **out) {
    *out = NULL;
    if (!path || !*path) return moe_fail(MOE_EUSAGE, "tokenizer: no path given");
    struct stat sb;
    if (stat(path, &sb) != 0) return moe_fail(MOE_EINPUT, "%s: no such file or folder", path);
    size_t pl = strlen(path);
    char *file = malloc(pl + 32), *cfg = malloc(pl + 32);
    moe_tokenizer *t = calloc(1, sizeof *t);
    if (!file || !cfg || !t) { free(file); free(cfg); free(t); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
    int gguf = !S_ISDIR(sb.st_mode) && moe_gguf_is_file(path);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(file, pl + 32, "%s/tokenizer.json", path);
        snprintf(cfg, pl + 32, "%s/tokenizer_config.json", path);
    } else if (gguf) { /* the tokenizer.json beside the GGUF file */
        const char *slash = strrchr(path, '/');
        int dl = slash ? (int)(slash - path) : 1;
        const char *dir = slash ? path : ".";
        snprintf(file, pl + 32, "%.*s/tokenizer.json", dl, dir);
        snprintf(cfg, pl + 32, "%.*s/tokenizer_config.json", dl, dir);
        if (stat(file, &sb) != 0) {
            free(file); free(cfg); free(t);
            return moe_fail(MOE_EINPUT, "%s: moe reads tokenizers from tokenizer.json, not from GGUF metadata; put the model's "
                            "tokenizer.json beside the GGUF file or pass --tokenizer", path);
        }
    } else {
        memcpy(file, path, pl + 1);
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
        memcpy(cfg, path, dl);
        memcpy(cfg + dl, "tokenizer_config.json", sizeof "tokenizer_config.json");
    }
    t->path = file;
    cJSON *root;
    moe_status st = moe_json_parse_file(file, MAX_TOKENIZER_FILE, &root);
    if (!st) {
        st = load(t, root, cfg);
        cJSON_Delete(root);
    }
    free(cfg);
    if (st) { moe_tokenizer_free(t); return st; }
    *out = t;
    return MOE_OK;
}

/* ---- the API ---- */

const moe_tokenizer_info *moe_tokenizer_get_info(const moe_tokenizer *t) { return &t->info; }
int moe_tokenizer_vocab_size(const moe_tokenizer *t) { return t->info.vocab_size; }

const char *moe_tokenizer_piece(const moe_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->info.vocab_size) return NULL;
    int32_t k = added_index(t, id);
    if (k >= 0) {
        if (len) *len = t->tok[k].len;
        return t->tok[k].content;
    }
    return tk_bpe_id_str(&t->bpe, id, len);
}

int32_t moe_tokenizer_token_id(const moe_tokenizer *t, const char *piece, size_t len) {
    int k = moe_strmap_get(&t->tok_by_content, piece, len);
    return k >= 0 ? t->tok[k].id : tk_bpe_token_id(&t->bpe, piece, len);
}

int moe_tokenizer_is_special(const moe_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->info.vocab_size) return 0;
    int32_t k = added_index(t, id);
    return k >= 0 && t->tok[k].special;
}

static moe_status encode_piece(const moe_tokenizer *t, tk_ctx *c, const char *s, size_t n, int at_start, tk_list *a,
                               tk_list *b, tk_buf *nb, tk_ids *ids) {
    if (t->norm) {
        MOE_TRY(tk_norm_apply(t->norm, c, s, n, nb));
        s = nb->p;
        n = nb->n;
    }
    tk_list_clear(a);
    MOE_TRY(split_added(t, &t->normed, c, s, n, at_start, a));
    const tk_list *words = a;
    if (t->pretok) {
        MOE_TRY(tk_pretok_apply(t->pretok, c, a, b));
        words = b;
    }
    for (size_t i = 0; i < words->n; i++) {
        if (words->v[i].id >= 0) {
            if (tk_ids_push(ids, words->v[i].id)) return moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
            continue;
        }
        MOE_TRY(tk_bpe_word(&t->bpe, c, tk_piece_str(words, i), words->v[i].len, ids));
    }
    return MOE_OK;
}

moe_status moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t len, int32_t **ids_out, size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    if (!text && len) return moe_fail(MOE_EUSAGE, "%s: encode: no text", t->path);
    size_t bad = moe_utf8_check((const unsigned char *)text, len);
    if (bad != len) return moe_fail(MOE_EINPUT, "text: not valid UTF-8 at byte %zu", bad);
    tk_ids ids = {0};
    moe_status st = tk_encode_part(t, text ? text : "", len, 1, &ids);
    if (st) { free(ids.v); return st; }
    if (!ids.v && !(ids.v = malloc(sizeof(int32_t)))) return moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
    *ids_out = ids.v;
    *n_out = ids.n;
    return MOE_OK;
}

moe_status tk_encode_part(const moe_tokenizer *t, const char *text, size_t len, int at_start, tk_ids *out) {
    tk_ctx c;
    MOE_TRY(tk_ctx_init(&c, t->path));
    tk_ctx_budget(&c, len);
    tk_list top = {0}, a = {0}, b = {0};
    tk_buf nb = {0};
    tk_ids ids = *out;
    moe_status st = split_added(t, &t->raw, &c, text, len, at_start, &top);
    for (size_t i = 0; !st && i < top.n; i++) {
        if (top.v[i].id >= 0) {
            if (tk_ids_push(&ids, top.v[i].id)) st = moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
            continue;
        }
        st = encode_piece(t, &c, tk_piece_str(&top, i), top.v[i].len, top.v[i].at_start, &a, &b, &nb, &ids);
    }
    tk_list_free(&top);
    tk_list_free(&a);
    tk_list_free(&b);
    tk_buf_free(&nb);
    tk_ctx_free(&c);
    *out = ids;   /* on failure the ids appended so far stay for the caller to free */
    return st;
}

static moe_status decode_to(const moe_tokenizer *t, tk_ctx *c, const int32_t *ids, size_t n, int skip_special, tk_buf *out,
                            int *incomplete) {
    tk_list toks = {0};
    moe_status st = MOE_OK;
    size_t bytes = 0;
    for (size_t i = 0; i < n && !st; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->info.vocab_size) {
            st = moe_fail(MOE_EINPUT, "%s: token id %d is outside the vocabulary [0, %d)", t->path, id, t->info.vocab_size);
            break;
        }
        size_t len;
        const char *s = moe_tokenizer_piece(t, id, &len);
        if (!s || (skip_special && moe_tokenizer_is_special(t, id))) continue;   /* holes decode to nothing */
        if (tk_list_push(&toks, s, len, -1, 0)) st = moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
        bytes += len;
    }
    tk_ctx_budget(c, bytes);   /* the decoders may write a bounded multiple of the pieces' bytes */
    if (!st) st = tk_dec_run(t->dec, c, &toks, out, incomplete);
    tk_list_free(&toks);
    return st;
}

moe_status moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                                size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    tk_ctx c;
    MOE_TRY(tk_ctx_init(&c, t->path));
    tk_buf out = {0};
    int incomplete;
    moe_status st = decode_to(t, &c, ids, n, skip_special, &out, &incomplete);
    if (!st && tk_buf_put(&out, "", 0)) st = moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
    tk_ctx_free(&c);
    if (st) { tk_buf_free(&out); return st; }
    *text = out.p;
    if (len) *len = out.n;
    return MOE_OK;
}

/* ---- streaming ----
 * The stream keeps a window of ids: a context (the ids whose text was emitted last) followed by ids
 * not yet emitted. Each push decodes the window; when the text does not end inside a character, the
 * part beyond the context's own text is new and goes out, and the ids just emitted become the next
 * context. Decoding with context gives the spacing a full decode gives (Metaspace and Strip treat
 * the first token specially; ByteFallback decodes runs of byte tokens as a whole). */

#define STREAM_MAX_PENDING 8   /* a character spans at most 4 bytes; beyond this, stop waiting */
#define STREAM_MAX_CONTEXT 32

struct moe_detokenizer {
    const moe_tokenizer *t;
    int skip;
    tk_ids win;
    size_t ctx_n;      /* win.v[0..ctx_n) is context */
    tk_buf prefix;     /* decode of the context */
    size_t done;       /* bytes of the window's text already given out (>= prefix.n) */
    tk_buf text, out;
    tk_ctx c;
};

moe_status moe_detokenizer_new(const moe_tokenizer *t, int skip_special, moe_detokenizer **out) {
    *out = NULL;
    moe_detokenizer *d = calloc(1, sizeof *d);
    if (!d) return moe_fail(MOE_ENOMEM, "%s: out of memory", t->path);
    d->t = t;
    d->skip = skip_special;
    moe_status st = tk_ctx_init(&d->c, t->path);
    if (st) { free(d); return st; }
    *out = d;
    return MOE_OK;
}

void moe_detokenizer_free(moe_detokenizer *d) {
    if (!d) return;
    free(d->win.v);
    tk_buf_free(&d->prefix);
    tk_buf_free(&d->text);
    tk_buf_free(&d->out);
    tk_ctx_free(&d->c);
    free(d);
}

static moe_status set_context(moe_detokenizer *d, size_t from) {
    if (from) memmove(d->win.v, d->win.v + from, (d->win.n - from) * sizeof *d->win.v);
    d->win.n -= from;
    d->ctx_n = d->win.n;
    d->prefix.n = 0;
    int inc;
    MOE_TRY(decode_to(d->t, &d->c, d->win.v, d->win.n, d->skip, &d->prefix, &inc));
    d->done = d->prefix.n;
    return MOE_OK;
}

/* Emit the window's text beyond what was given out; force: even if it ends inside a character. */
static moe_status step(moe_detokenizer *d, int force, const char **text, size_t *len) {
    d->text.n = 0;
    d->out.n = 0;
    int incomplete;
    MOE_TRY(decode_to(d->t, &d->c, d->win.v, d->win.n, d->skip, &d->text, &incomplete));
    size_t n = d->text.n, pl = d->prefix.n, pending = d->win.n - d->ctx_n;
    int same = n >= pl && (!pl || !memcmp(d->text.p, d->prefix.p, pl));
    size_t from = d->done > pl ? d->done : pl;
    if (!same)   /* the context decodes differently with what followed (invalid byte runs only) */
        while (from < n && ((unsigned char)d->text.p[from] & 0xc0) == 0x80) from++;
    if (!force && incomplete) {
        /* Bytes that never form a character can pile up before the unfinished one (a byte-level
         * decoder shows each as U+FFFD at once); give those out, keep waiting on the last one. */
        if (pending >= STREAM_MAX_PENDING && same && n >= from + 3 && !memcmp(d->text.p + n - 3, "\xef\xbf\xbd", 3)) {
            if (tk_buf_put(&d->out, d->text.p + from, n - 3 - from)) return moe_fail(MOE_ENOMEM, "%s: out of memory", d->t->path);
            d->done = n - 3;
        }
        goto done;
    }
    if (n > from) {
        if (tk_buf_put(&d->out, d->text.p + from, n - from)) return moe_fail(MOE_ENOMEM, "%s: out of memory", d->t->path);
        MOE_TRY(set_context(d, d->ctx_n));   /* the ids just given out become the context */
    } else {
        /* Nothing new (skipped or empty tokens): they join the context, which stays bounded. */
        d->ctx_n = d->win.n;
        if (d->win.n > STREAM_MAX_CONTEXT) MOE_TRY(set_context(d, d->win.n - STREAM_MAX_CONTEXT));
        else {
            d->prefix.n = 0;
            if (tk_buf_put(&d->prefix, d->text.p, n)) return moe_fail(MOE_ENOMEM, "%s: out of memory", d->t->path);
            d->done = n;
        }
    }
done:
    if (tk_buf_put(&d->out, "", 0)) return moe_fail(MOE_ENOMEM, "%s: out of memory", d->t->path);
    *text = d->out.p;
    if (len) *len = d->out.n;
    return MOE_OK;
}

moe_status moe_detokenizer_push(moe_detokenizer *d, int32_t id, const char **text, size_t *len) {
    *text = "";
    if (len) *len = 0;
    if (id < 0 || id >= d->t->info.vocab_size)
        return moe_fail(MOE_EINPUT, "%s: token id %d is outside the vocabulary [0, %d)", d->t->path, id, d->t->info.vocab_size);
    if (tk_ids_push(&d->win, id)) return moe_fail(MOE_ENOMEM, "%s: out of memory", d->t->path);
    return step(d, 0, text, len);
}

moe_status moe_detokenizer_flush(moe_detokenizer *d, const char **text, size_t *len) {
    *text = "";
    if (len) *len = 0;
    if (d->win.n == d->ctx_n) return MOE_OK;
    return step(d, 1, text, len);
}
