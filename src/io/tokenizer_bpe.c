/* tokenizer_bpe.c - the BPE model of tokenizer.json.
 *
 * A word starts as one symbol per character (with continuing_subword_prefix / end_of_word_suffix,
 * byte fallback to <0xNN> tokens, and unk fusing decided exactly as tokenizers does), then the
 * lowest-ranked adjacent pair is merged until no pair has a merge. Pairs wait in a binary min-heap
 * ordered by (rank, position); symbols form a doubly linked list, so a merge costs O(log n) and a
 * word of n characters O(n log n), where rescanning for the best pair would cost O(n^2) on the long
 * words that tokenizers without a pre-tokenizer (Llama 2) feed in. A popped entry is stale when its
 * left symbol was absorbed or the pair now there merges into a different token; like tokenizers,
 * staleness is judged by the merged token id alone, which matters only for vocabularies where two
 * different pairs spell the same token.
 *
 * Merges live in an open-addressing table keyed by (left id, right id); a later duplicate of a
 * merge overrides the earlier rank, as tokenizers' HashMap collect does. Words of up to 256 bytes
 * are cached per encode call: natural text repeats its words, and the cache changes no result. */
#include "io/tokenizer_internal.h"
#include "core/error.h"
#include "io/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS (1 << 24)
#define EMPTY_KEY UINT64_MAX

static size_t merge_slot(const tk_bpe *b, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h ^ (h >> 32)) & (b->mcap - 1);
    while (b->mkey[i] != EMPTY_KEY && b->mkey[i] != key) i = (i + 1) & (b->mcap - 1);
    return i;
}

static inline int merge_get(const tk_bpe *b, int32_t l, int32_t r, uint32_t *rank, int32_t *id) {
    if (!b->mcap) return 0;
    size_t i = merge_slot(b, ((uint64_t)(uint32_t)l << 32) | (uint32_t)r);
    if (b->mkey[i] == EMPTY_KEY) return 0;
    *rank = b->mrank[i];
    *id = b->mnew[i];
    return 1;
}

/* The vocab table stores a 32-bit tag of the hash beside the entry index, so a probe touches one
 * 8-byte slot and compares strings only when the tags agree. */
static size_t vocab_find(const tk_bpe *b, uint64_t h, const char *s, size_t n) {
    uint64_t tag = h >> 32;
    size_t i = (size_t)h & (b->vcap - 1);
    for (;; i = (i + 1) & (b->vcap - 1)) {
        uint64_t v = b->vslot[i];
        if (!v) return i;
        if ((v >> 32) == tag) {
            uint32_t e = (uint32_t)v - 1;
            if (b->elen[e] == n && !memcmp(b->estr[e], s, n)) return i;
        }
    }
}

int32_t tk_bpe_token_id(const tk_bpe *b, const char *s, size_t n) {
    if (!b->vcap) return -1;
    uint64_t v = b->vslot[vocab_find(b, tk_hash(s, n), s, n)];
    return v ? b->eid[(uint32_t)v - 1] : -1;
}

void tk_bpe_free(tk_bpe *b) {
    free(b->vslot);
    free(b->estr);
    free(b->elen);
    free(b->eid);
    free(b->pool);
    free(b->id_entry);
    free(b->by_id);
    free(b->mkey);
    free(b->mrank);
    free(b->mnew);
    free(b->unk);
    free(b->csp);
    free(b->eow);
    memset(b, 0, sizeof *b);
}

/* Entries by id; among entries with the same id the later one first (it is the one a lookup finds). */
static int by_id_then_late(const void *x, const void *y, void *ctx) {
    const int32_t *eid = ctx;
    uint32_t a = *(const uint32_t *)x, c = *(const uint32_t *)y;
    int32_t ia = eid[a], ic = eid[c];
    if (ia != ic) return ia < ic ? -1 : 1;
    return a > c ? -1 : a < c;
}

static moe_status parse_vocab(const char *where, const cJSON *v, tk_bpe *b) {
    if (!cJSON_IsObject(v)) return moe_fail(MOE_EINPUT, "%s.vocab: must be an object of token -> id", where);
    size_t count = 0, bytes = 0;
    int64_t max_id = -1;
    for (const cJSON *e = v->child; e; e = e->next) {
        size_t l = strlen(e->string);
        if (moe_utf8_check((const unsigned char *)e->string, l) != l)
            return moe_fail(MOE_EINPUT, "%s.vocab: a token is not valid UTF-8 (near \"%.40s\")", where, e->string);
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble < MAX_IDS) ||
            e->valuedouble != (double)(int64_t)e->valuedouble)
            return moe_fail(MOE_EINPUT, "%s.vocab: id of token \"%.60s\" must be an integer in [0, %d)", where,
                            e->string, MAX_IDS);
        if ((int64_t)e->valuedouble > max_id) max_id = (int64_t)e->valuedouble;
        count++;
        bytes += l + 1;
    }
    b->n_vocab = count;
    b->n_ids = (int32_t)(max_id + 1);
    size_t cap = 16;
    while (cap < count * 2) cap <<= 1;
    b->vcap = cap;
    b->vslot = calloc(cap, sizeof *b->vslot);
    b->estr = malloc((count + 1) * sizeof *b->estr);
    b->elen = malloc((count + 1) * sizeof *b->elen);
    b->eid = malloc((count + 1) * sizeof *b->eid);
    b->pool = malloc(bytes ? bytes : 1);
    if (tk_dense_ok(b->n_ids, count)) b->id_entry = calloc((size_t)b->n_ids + 1, sizeof *b->id_entry);
    else b->by_id = malloc((count + 1) * sizeof *b->by_id);
    if (!b->vslot || !b->estr || !b->elen || !b->eid || !b->pool || (!b->id_entry && !b->by_id))
        return moe_fail(MOE_ENOMEM, "%s.vocab: out of memory", where);
    char *p = b->pool;
    uint32_t e = 0;
    for (const cJSON *it = v->child; it; it = it->next, e++) {
        size_t l = strlen(it->string);
        memcpy(p, it->string, l + 1);
        int32_t id = (int32_t)it->valuedouble;
        uint64_t h = tk_hash(p, l);
        size_t slot = vocab_find(b, h, p, l);   /* keys are unique: the JSON parser refuses duplicates */
        b->estr[e] = p;
        b->elen[e] = (uint32_t)l;
        b->eid[e] = id;
        b->vslot[slot] = (h >> 32 << 32) | (e + 1);
        if (b->id_entry) b->id_entry[id] = e + 1;   /* the last entry with an id wins */
        else b->by_id[e] = e;
        p += l + 1;
    }
    if (b->by_id) {   /* sparse ids: entries by id, the later entry first among equal ids */
        qsort_r(b->by_id, count, sizeof *b->by_id, by_id_then_late, b->eid);
    }
    return MOE_OK;
}

const char *tk_bpe_id_str(const tk_bpe *b, int32_t id, size_t *len) {
    int64_t e = -1;
    if (id < 0 || id >= b->n_ids) e = -1;
    else if (b->id_entry) e = (int64_t)b->id_entry[id] - 1;
    else {
        size_t lo = 0, hi = b->n_vocab;   /* first position whose id is >= id */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (b->eid[b->by_id[mid]] < id) lo = mid + 1;
            else hi = mid;
        }
        if (lo < b->n_vocab && b->eid[b->by_id[lo]] == id) e = b->by_id[lo];
    }
    if (len) *len = e >= 0 ? b->elen[e] : 0;
    return e >= 0 ? b->estr[e] : NULL;
}

enum { M_OK, M_FORMAT, M_LEFT, M_RIGHT, M_MERGED, M_NOMEM };

/* One merge to (left id, right id, merged id), or the reason it cannot be. */
static int resolve_merge(const tk_bpe *b, const cJSON *e, tk_buf *joined, int32_t out[3]) {
    const char *l, *r;
    size_t ln, rn;
    if (cJSON_IsString(e)) {   /* "left right" */
        const char *s = e->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return M_FORMAT;
        l = s; ln = (size_t)(sp - s); r = sp + 1; rn = strlen(r);
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
               cJSON_IsString(e->child->next)) {   /* ["left", "right"] */
        l = e->child->valuestring; ln = strlen(l);
        r = e->child->next->valuestring; rn = strlen(r);
    } else return M_FORMAT;
    if ((out[0] = tk_bpe_token_id(b, l, ln)) < 0) return M_LEFT;
    if ((out[1] = tk_bpe_token_id(b, r, rn)) < 0) return M_RIGHT;
    /* The merged token drops the right part's continuing_subword_prefix. */
    if (b->csp && rn >= b->csp_len && !memcmp(r, b->csp, b->csp_len)) { r += b->csp_len; rn -= b->csp_len; }
    joined->n = 0;
    if (tk_buf_put(joined, l, ln) || tk_buf_put(joined, r, rn)) return M_NOMEM;
    return (out[2] = tk_bpe_token_id(b, joined->p, joined->n)) < 0 ? M_MERGED : M_OK;
}

static moe_status merge_error(const char *where, int i, const tk_bpe *b, const cJSON *e) {
    tk_buf joined = {0};
    int32_t ids[3];
    int why = resolve_merge(b, e, &joined, ids);
    char shown[64] = "";
    if (why == M_FORMAT && cJSON_IsString(e)) snprintf(shown, sizeof shown, "%s", e->valuestring);
    else if (why == M_LEFT || why == M_RIGHT) {
        const cJSON *part = cJSON_IsString(e) ? NULL : why == M_LEFT ? e->child : e->child->next;
        if (part) snprintf(shown, sizeof shown, "%s", part->valuestring);
        else {
            const char *sp = strchr(e->valuestring, ' ');
            if (why == M_LEFT) snprintf(shown, sizeof shown, "%.*s", (int)(sp - e->valuestring), e->valuestring);
            else snprintf(shown, sizeof shown, "%s", sp + 1);
        }
    } else if (why == M_MERGED) snprintf(shown, sizeof shown, "%s", joined.p);
    tk_buf_free(&joined);
    switch (why) {
    case M_FORMAT: return moe_fail(MOE_EINPUT, "%s.merges[%d]: must be \"a b\" (one space) or [\"a\", \"b\"], got \"%s\"", where, i, shown);
    case M_LEFT: case M_RIGHT: return moe_fail(MOE_EINPUT, "%s.merges[%d]: token \"%s\" is not in the vocab", where, i, shown);
    case M_MERGED: return moe_fail(MOE_EINPUT, "%s.merges[%d]: merged token \"%s\" is not in the vocab", where, i, shown);
    default: return moe_fail(MOE_ENOMEM, "%s: out of memory", where);
    }
}

/* Resolving a merge is three hash lookups that mostly miss the cache; they are independent, so
 * they run in parallel. Insertion stays sequential so that a later duplicate wins, and an error
 * names the first bad merge in file order. */
static moe_status parse_merges(const char *where, const cJSON *m, tk_bpe *b) {
    if (!m || cJSON_IsNull(m)) return MOE_OK;
    if (!cJSON_IsArray(m)) return moe_fail(MOE_EINPUT, "%s.merges: must be an array", where);
    int n = cJSON_GetArraySize(m);
    if (n == 0) return MOE_OK;
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    b->mcap = cap;
    b->mkey = malloc(cap * sizeof *b->mkey);
    b->mrank = malloc(cap * sizeof *b->mrank);
    b->mnew = malloc(cap * sizeof *b->mnew);
    const cJSON **items = malloc((size_t)n * sizeof *items);
    int32_t (*ids)[3] = malloc((size_t)n * sizeof *ids);
    if (!b->mkey || !b->mrank || !b->mnew || !items || !ids) {
        free(items);
        free(ids);
        return moe_fail(MOE_ENOMEM, "%s.merges: out of memory", where);
    }
    memset(b->mkey, 0xff, cap * sizeof *b->mkey);
    int k = 0;
    for (const cJSON *e = m->child; e && k < n; e = e->next) items[k++] = e;
    int first_bad = n;
    #pragma omp parallel num_threads(moe_get_threads()) reduction(min : first_bad)
    {
        tk_buf joined = {0};
        #pragma omp for schedule(static)
        for (int i = 0; i < n; i++)
            if (resolve_merge(b, items[i], &joined, ids[i]) != M_OK && i < first_bad) first_bad = i;
        tk_buf_free(&joined);
    }
    moe_status st = first_bad < n ? merge_error(where, first_bad, b, items[first_bad]) : MOE_OK;
    for (int i = 0; i < n && !st; i++) {
        uint64_t key = ((uint64_t)(uint32_t)ids[i][0] << 32) | (uint32_t)ids[i][1];
        size_t slot = merge_slot(b, key);
        b->mkey[slot] = key;
        b->mrank[slot] = (uint32_t)i;
        b->mnew[slot] = ids[i][2];
    }
    free(items);
    free(ids);
    return st;
}

moe_status tk_bpe_parse(const char *where, const cJSON *model, tk_bpe *b) {
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    for (int i = 0; i < 256; i++) b->byte_id[i] = -1;
    moe_status st = MOE_OK;
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (drop && !cJSON_IsNull(drop)) {
        if (!cJSON_IsNumber(drop)) st = moe_fail(MOE_EINPUT, "%s: field \"dropout\" must be a number or null", where);
        else if (drop->valuedouble != 0)
            st = moe_fail(MOE_EINPUT, "%s: BPE dropout %g is not supported (it makes encoding random)", where, drop->valuedouble);
    }
    if (!st) st = tk_json_strdup(where, model, "unk_token", 0, NULL, &b->unk, NULL);
    if (!st) st = tk_json_strdup(where, model, "continuing_subword_prefix", 0, NULL, &b->csp, &b->csp_len);
    if (!st) st = tk_json_strdup(where, model, "end_of_word_suffix", 0, NULL, &b->eow, &b->eow_len);
    if (!st) st = moe_json_bool(where, model, "fuse_unk", 0, 0, &b->fuse_unk);
    if (!st) st = moe_json_bool(where, model, "byte_fallback", 0, 0, &b->byte_fallback);
    if (!st) st = moe_json_bool(where, model, "ignore_merges", 0, 0, &b->ignore_merges);
    if (!st) st = parse_vocab(where, cJSON_GetObjectItemCaseSensitive(model, "vocab"), b);
    if (!st) st = parse_merges(where, cJSON_GetObjectItemCaseSensitive(model, "merges"), b);
    if (st) { tk_bpe_free(b); return st; }
    if (b->csp && !b->csp_len) { free(b->csp); b->csp = NULL; }
    if (b->eow && !b->eow_len) { free(b->eow); b->eow = NULL; }
    if (b->unk) b->unk_id = tk_bpe_token_id(b, b->unk, strlen(b->unk));
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_id[i] = tk_bpe_token_id(b, name, 6);
    }
    return MOE_OK;
}

/* ---- the word cache ---- */

struct tk_bpe_cache {
    uint64_t *hash;                   /* 0 = empty slot */
    uint32_t *key_off, *key_len, *ids_off, *ids_n;
    size_t cap, count;
    tk_buf keys;
    tk_ids ids;
};

#define CACHE_CAP (1u << 16)
#define CACHE_MAX_WORD 256

void tk_bpe_cache_free(tk_bpe_cache *k) {
    if (!k) return;
    free(k->hash); free(k->key_off); free(k->key_len); free(k->ids_off); free(k->ids_n);
    tk_buf_free(&k->keys);
    free(k->ids.v);
    free(k);
}

static int cache_alloc(tk_bpe_cache *k, size_t cap) {
    k->cap = cap;
    k->hash = calloc(cap, sizeof *k->hash);
    k->key_off = malloc(cap * sizeof *k->key_off);
    k->key_len = malloc(cap * sizeof *k->key_len);
    k->ids_off = malloc(cap * sizeof *k->ids_off);
    k->ids_n = malloc(cap * sizeof *k->ids_n);
    return k->hash && k->key_off && k->key_len && k->ids_off && k->ids_n ? 0 : -1;
}

/* Short texts stay cheap: the table starts small and doubles up to CACHE_CAP. */
static tk_bpe_cache *cache_new(void) {
    tk_bpe_cache *k = calloc(1, sizeof *k);
    if (!k || cache_alloc(k, 256)) { tk_bpe_cache_free(k); return NULL; }
    return k;
}

static size_t cache_find(const tk_bpe_cache *k, uint64_t h, const char *w, size_t n);

static int cache_grow(tk_bpe_cache *k) {
    tk_bpe_cache old = *k;
    if (cache_alloc(k, old.cap * 2)) {
        free(k->hash); free(k->key_off); free(k->key_len); free(k->ids_off); free(k->ids_n);
        *k = old;
        return -1;
    }
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.hash[i]) continue;
        size_t j = cache_find(k, old.hash[i], k->keys.p + old.key_off[i], old.key_len[i]);
        k->hash[j] = old.hash[i];
        k->key_off[j] = old.key_off[i];
        k->key_len[j] = old.key_len[i];
        k->ids_off[j] = old.ids_off[i];
        k->ids_n[j] = old.ids_n[i];
    }
    free(old.hash); free(old.key_off); free(old.key_len); free(old.ids_off); free(old.ids_n);
    return 0;
}

static size_t cache_find(const tk_bpe_cache *k, uint64_t h, const char *w, size_t n) {
    size_t i = h & (k->cap - 1);
    while (k->hash[i] && !(k->hash[i] == h && k->key_len[i] == n && !memcmp(k->keys.p + k->key_off[i], w, n)))
        i = (i + 1) & (k->cap - 1);
    return i;
}

static void cache_put(tk_bpe_cache *k, uint64_t h, size_t slot, const char *w, size_t n, const int32_t *ids, size_t m) {
    if (k->count * 2 >= k->cap && k->cap < CACHE_CAP && !cache_grow(k)) slot = cache_find(k, h, w, n);
    if (k->count * 2 >= k->cap || k->keys.n > (1u << 26) || k->ids.n > (1u << 24)) {   /* full: start over */
        memset(k->hash, 0, k->cap * sizeof *k->hash);
        k->count = 0;
        k->keys.n = 0;
        k->ids.n = 0;
        slot = h & (k->cap - 1);
    }
    size_t koff = k->keys.n, ioff = k->ids.n;
    if (tk_buf_put(&k->keys, w, n)) return;   /* the cache is only an optimisation */
    for (size_t i = 0; i < m; i++)
        if (tk_ids_push(&k->ids, ids[i])) { k->keys.n = koff; k->ids.n = ioff; return; }
    k->hash[slot] = h;
    k->key_off[slot] = (uint32_t)koff;
    k->key_len[slot] = (uint32_t)n;
    k->ids_off[slot] = (uint32_t)ioff;
    k->ids_n[slot] = (uint32_t)m;
    k->count++;
}

/* ---- merging ---- */

typedef struct sym { int32_t id, prev, next; int alive; } sym;
typedef struct pend { uint32_t rank, pos; int32_t id; } pend;

static inline int pend_less(pend a, pend b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(pend *h, size_t *n, pend x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pend_less(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static pend heap_pop(pend *h, size_t *n) {
    pend top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, best = i;
        pend bv = x;
        if (l < *n && pend_less(h[l], bv)) { best = l; bv = h[l]; }
        if (l + 1 < *n && pend_less(h[l + 1], bv)) { best = l + 1; }
        if (best == i) break;
        h[i] = h[best];
        i = best;
    }
    if (*n) h[i] = x;
    return top;
}

static int reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int add_sym(tk_ctx *c, size_t *ns, int32_t id) {
    if (reserve(&c->sym, &c->sym_cap, *ns + 1, sizeof(sym))) return -1;
    sym *s = c->sym;
    s[*ns] = (sym){id, (int32_t)*ns - 1, (int32_t)*ns + 1, 1};
    (*ns)++;
    return 0;
}

moe_status tk_bpe_word(const tk_bpe *b, tk_ctx *c, const char *w, size_t n, tk_ids *out) {
    if (!n) return MOE_OK;
    if (b->ignore_merges) {
        int32_t id = tk_bpe_token_id(b, w, n);
        if (id >= 0) return tk_ids_push(out, id) ? moe_fail(MOE_ENOMEM, "%s: out of memory", c->path) : MOE_OK;
    }
    uint64_t h = 0;
    size_t slot = 0;
    if (n <= CACHE_MAX_WORD) {
        if (!c->cache) c->cache = cache_new();
        if (c->cache) {
            h = tk_hash(w, n) | 1;
            slot = cache_find(c->cache, h, w, n);
            if (c->cache->hash[slot]) {
                const int32_t *ids = c->cache->ids.v + c->cache->ids_off[slot];
                for (uint32_t i = 0; i < c->cache->ids_n[slot]; i++)
                    if (tk_ids_push(out, ids[i])) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
                return MOE_OK;
            }
        }
    }
    /* One symbol per character. */
    size_t ns = 0;
    int32_t unk_pending = -1;   /* an unknown character (or a fused run) not yet added */
    for (size_t i = 0; i < n;) {
        size_t l = tk_utf8_len((unsigned char)w[i]);
        if (i + l > n) l = n - i;
        c->word.n = 0;
        if ((b->csp && i > 0 && tk_buf_put(&c->word, b->csp, b->csp_len)) || tk_buf_put(&c->word, w + i, l) ||
            (b->eow && i + l == n && tk_buf_put(&c->word, b->eow, b->eow_len)))
            goto nomem;
        i += l;
        int32_t id = tk_bpe_token_id(b, c->word.p, c->word.n);
        if (id >= 0) {
            if (unk_pending >= 0 && add_sym(c, &ns, unk_pending)) goto nomem;
            unk_pending = -1;
            if (add_sym(c, &ns, id)) goto nomem;
            continue;
        }
        if (b->byte_fallback) {   /* every byte of the symbol as <0xNN>, if all of them exist */
            size_t k = 0;
            while (k < c->word.n && b->byte_id[(unsigned char)c->word.p[k]] >= 0) k++;
            if (k == c->word.n) {
                for (k = 0; k < c->word.n; k++)
                    if (add_sym(c, &ns, b->byte_id[(unsigned char)c->word.p[k]])) goto nomem;
                continue;   /* tokenizers leaves a pending unk pending here */
            }
        }
        if (b->unk) {
            if (b->unk_id < 0)
                return moe_fail(MOE_EINPUT, "%s: model.unk_token \"%.60s\" is not in the vocab", c->path, b->unk);
            if (unk_pending >= 0 && !b->fuse_unk && add_sym(c, &ns, unk_pending)) goto nomem;
            unk_pending = b->unk_id;
        }
    }
    if (unk_pending >= 0 && add_sym(c, &ns, unk_pending)) goto nomem;
    if (!ns) return MOE_OK;
    sym *s = c->sym;
    s[ns - 1].next = -1;
    /* Merge by rank. */
    if (reserve(&c->heap, &c->heap_cap, ns, sizeof(pend))) goto nomem;
    pend *hp = c->heap;
    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t rank;
        int32_t nid;
        if (merge_get(b, s[i].id, s[i + 1].id, &rank, &nid)) heap_push(hp, &nh, (pend){rank, (uint32_t)i, nid});
    }
    while (nh) {
        pend top = heap_pop(hp, &nh);
        sym *a = &s[top.pos];
        if (!a->alive || a->next < 0) continue;
        sym *r = &s[a->next];
        uint32_t rank;
        int32_t nid;
        if (!merge_get(b, a->id, r->id, &rank, &nid) || nid != top.id) continue;
        a->id = top.id;
        r->alive = 0;
        a->next = r->next;
        if (a->next >= 0) s[a->next].prev = (int32_t)top.pos;
        /* At most two new pairs per merge, so the heap never outgrows 3 * ns. */
        if (reserve(&c->heap, &c->heap_cap, nh + 2, sizeof(pend))) goto nomem;
        hp = c->heap;
        if (a->prev >= 0 && merge_get(b, s[a->prev].id, a->id, &rank, &nid))
            heap_push(hp, &nh, (pend){rank, (uint32_t)a->prev, nid});
        if (a->next >= 0 && merge_get(b, a->id, s[a->next].id, &rank, &nid))
            heap_push(hp, &nh, (pend){rank, top.pos, nid});
    }
    size_t first = out->n;
    for (int32_t i = 0; i >= 0; i = s[i].next)
        if (tk_ids_push(out, s[i].id)) goto nomem;
    if (h && c->cache) cache_put(c->cache, h, slot, w, n, out->v + first, out->n - first);
    return MOE_OK;
nomem:
    return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
}
