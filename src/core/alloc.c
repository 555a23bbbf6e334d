/* alloc.c - aligned allocation helpers. */
#include "core/alloc.h"
#include <stdlib.h>
#include <string.h>

void *moe_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void *moe_calloc(size_t n, size_t size) {
    size_t bytes;
    if (moe_mul_size(n, size, &bytes)) return NULL;
    void *p = moe_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void moe_free(void *p) { free(p); }

char *moe_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
