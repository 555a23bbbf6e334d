/* arena.h - scratch memory for the forward pass. Allocations are bump-pointer and never move; reset
 * makes all blocks reusable without freeing them, so after the first token a decode step touches no
 * fresh pages (glibc would otherwise mmap and fault in every large buffer on every call). */
#ifndef MOE_CORE_ARENA_H
#define MOE_CORE_ARENA_H
#include <stddef.h>

typedef struct moe_arena_block moe_arena_block;

typedef struct moe_arena {
    moe_arena_block *head, *cur;   /* allocations come from cur or the blocks after it (a stack) */
} moe_arena;

/* 64-byte aligned, uninitialised; NULL if out of memory. */
void *moe_arena_alloc(moe_arena *a, size_t bytes);
/* Mark everything free (blocks are kept). */
void moe_arena_reset(moe_arena *a);
void moe_arena_free(moe_arena *a);
/* Bytes held in blocks (used or not). */
size_t moe_arena_capacity(const moe_arena *a);
/* A position to return to: everything allocated after it is released by moe_arena_pop. */
typedef struct moe_arena_mark { moe_arena_block *block; size_t used; } moe_arena_mark;
moe_arena_mark moe_arena_push(const moe_arena *a);
void moe_arena_pop(moe_arena *a, moe_arena_mark m);
#endif
