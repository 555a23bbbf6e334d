/* alloc.h - allocation with overflow-checked sizes. Every buffer the kernels touch is 64-byte
 * aligned so that SIMD loads never straddle cache lines at row starts. */
#ifndef MOE_CORE_ALLOC_H
#define MOE_CORE_ALLOC_H
#include <stddef.h>
#include <stdint.h>

void *moe_alloc(size_t bytes);             /* 64-byte aligned, uninitialised; NULL on failure */
void *moe_calloc(size_t n, size_t size);   /* 64-byte aligned, zeroed; NULL on overflow/failure */
void moe_free(void *p);
char *moe_strdup(const char *s);

/* a*b without overflow: returns 0 and sets *out, or returns -1. */
static inline int moe_mul_size(size_t a, size_t b, size_t *out) {
    if (b && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}
#endif
