/* strmap.c - linear probing, FNV-1a hashing, load factor <= 1/2. */
#include "core/strmap.h"
#include <stdlib.h>
#include <string.h>

uint64_t moe_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    return h;
}

int moe_strmap_init(moe_strmap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2 + 2) cap <<= 1;
    m->keys = calloc(cap, sizeof *m->keys);
    m->lens = calloc(cap, sizeof *m->lens);
    m->vals = calloc(cap, sizeof *m->vals);
    m->cap = cap;
    m->count = 0;
    if (!m->keys || !m->lens || !m->vals) { moe_strmap_free(m); return -1; }
    return 0;
}

void moe_strmap_free(moe_strmap *m) {
    free(m->keys); free(m->lens); free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const moe_strmap *m, const char *key, size_t len) {
    size_t i = moe_hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int grow(moe_strmap *m) {
    moe_strmap n;
    if (moe_strmap_init(&n, m->cap)) return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            size_t j = find_slot(&n, m->keys[i], m->lens[i]);
            n.keys[j] = m->keys[i]; n.lens[j] = m->lens[i]; n.vals[j] = m->vals[i]; n.count++;
        }
    moe_strmap_free(m);
    *m = n;
    return 0;
}

int moe_strmap_put(moe_strmap *m, const char *key, size_t len, int val) {
    if ((m->count + 1) * 2 > m->cap && grow(m)) return -1;
    size_t i = find_slot(m, key, len);
    if (m->keys[i]) return 1;
    m->keys[i] = key; m->lens[i] = len; m->vals[i] = val; m->count++;
    return 0;
}

int moe_strmap_get(const moe_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = find_slot(m, key, len);
    return m->keys[i] ? m->vals[i] : -1;
}
