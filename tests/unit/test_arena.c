/* test_arena.c - the scratch arena: alignment, no moving, stack discipline of push/pop, reuse after
 * reset without new blocks, growth past the first block, capacity. */
#include "core/arena.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

int main(void) {
    moe_arena a = {0};
    srand(12345);
    /* allocations are 64-byte aligned, distinct and keep their contents */
    enum { N = 200 };
    unsigned char *p[N];
    size_t sz[N];
    for (int i = 0; i < N; i++) {
        sz[i] = (size_t)(rand() % 300000) + 1;
        p[i] = moe_arena_alloc(&a, sz[i]);
        CHECK(p[i] && ((uintptr_t)p[i] & 63) == 0, "allocation %d not aligned", i);
        memset(p[i], i & 255, sz[i]);
    }
    for (int i = 0; i < N; i++)
        for (size_t k = 0; k < sz[i]; k += 997) CHECK(p[i][k] == (i & 255), "allocation %d overwritten", i);
    /* push/pop: allocations after the mark are released, earlier ones stay */
    moe_arena_mark m = moe_arena_push(&a);
    unsigned char *q = moe_arena_alloc(&a, 1000);
    moe_arena_pop(&a, m);
    unsigned char *q2 = moe_arena_alloc(&a, 1000);
    CHECK(q == q2, "pop did not release the allocation after the mark");
    for (int i = 0; i < N; i++) CHECK(p[i][0] == (i & 255), "pop clobbered allocation %d", i);
    /* capacity counts every block: at least what is in use, unchanged by reset */
    size_t total = 0;
    for (int i = 0; i < N; i++) total += sz[i];
    size_t cap = moe_arena_capacity(&a);
    CHECK(cap >= total, "capacity %zu below the %zu bytes in use", cap, total);
    /* reset reuses the same memory: the same sequence of sizes gets the same addresses */
    moe_arena_reset(&a);
    CHECK(moe_arena_capacity(&a) == cap, "reset changed the capacity");
    for (int i = 0; i < N; i++) {
        unsigned char *r = moe_arena_alloc(&a, sz[i]);
        CHECK(r != NULL, "allocation after reset failed");
        if (i == 0) CHECK(r == p[0], "reset did not reuse the first block");
    }
    /* a request larger than every block gets its own */
    unsigned char *big = moe_arena_alloc(&a, (size_t)64 << 20);
    CHECK(big != NULL, "large allocation failed");
    if (big) memset(big, 1, (size_t)64 << 20);
    moe_arena_free(&a);
    CHECK(a.head == NULL && moe_arena_capacity(&a) == 0, "free left blocks");
    if (failures) { printf("%d failures\n", failures); return 1; }
    printf("arena ok\n");
    return 0;
}
