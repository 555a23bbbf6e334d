/* strmap.h - open-addressing hash map from string keys to int values (tensor names, vocab).
 * Keys are not copied: they must outlive the map. */
#ifndef MOE_CORE_STRMAP_H
#define MOE_CORE_STRMAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct moe_strmap {
    const char **keys;
    size_t *lens;
    int *vals;
    size_t cap, count;
} moe_strmap;

int moe_strmap_init(moe_strmap *m, size_t expected);        /* 0 ok, -1 no memory */
void moe_strmap_free(moe_strmap *m);
/* Insert key (len bytes). Returns 0 if inserted, 1 if the key already existed (value unchanged), -1 no memory. */
int moe_strmap_put(moe_strmap *m, const char *key, size_t len, int val);
/* Value for key, or -1 if absent. */
int moe_strmap_get(const moe_strmap *m, const char *key, size_t len);
static inline int moe_strmap_gets(const moe_strmap *m, const char *key);
uint64_t moe_hash_bytes(const void *p, size_t n);

#include <string.h>
static inline int moe_strmap_gets(const moe_strmap *m, const char *key) { return moe_strmap_get(m, key, strlen(key)); }
#endif
