/* arena.c - a list of blocks, each bump-allocated; see arena.h. */
#include "core/arena.h"
#include "core/alloc.h"
#include <stdint.h>

struct moe_arena_block {
    moe_arena_block *next;
    size_t cap, used;
    unsigned char *data;
};

void *moe_arena_alloc(moe_arena *a, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    moe_arena_block *b = a->cur ? a->cur : a->head, *last = NULL;
    for (; b; b = b->next) {
        if (b->cap - b->used >= bytes) {
            void *p = b->data + b->used;
            b->used += bytes;
            a->cur = b;
            return p;
        }
        last = b;
    }
    if (!last) for (last = a->head; last && last->next; last = last->next) {}
    size_t cap = last ? last->cap * 2 : (size_t)1 << 20;
    while (cap < bytes) cap *= 2;
    moe_arena_block *nb = moe_alloc(sizeof *nb);
    if (!nb) return NULL;
    nb->data = moe_alloc(cap);
    if (!nb->data) { moe_free(nb); return NULL; }
    nb->next = NULL;
    nb->cap = cap;
    nb->used = bytes;
    if (last) last->next = nb;
    else a->head = nb;
    a->cur = nb;
    return nb->data;
}

void moe_arena_reset(moe_arena *a) {
    for (moe_arena_block *b = a->head; b; b = b->next) b->used = 0;
    a->cur = a->head;
}

void moe_arena_free(moe_arena *a) {
    for (moe_arena_block *b = a->head, *n; b; b = n) {
        n = b->next;
        moe_free(b->data);
        moe_free(b);
    }
    a->head = a->cur = NULL;
}

size_t moe_arena_capacity(const moe_arena *a) {
    size_t n = 0;
    for (const moe_arena_block *b = a->head; b; b = b->next) n += b->cap;
    return n;
}

moe_arena_mark moe_arena_push(const moe_arena *a) {
    moe_arena_mark m = {a->cur, a->cur ? a->cur->used : 0};
    return m;
}

void moe_arena_pop(moe_arena *a, moe_arena_mark m) {
    if (!m.block) { moe_arena_reset(a); return; }
    m.block->used = m.used;
    for (moe_arena_block *b = m.block->next; b; b = b->next) b->used = 0;
    a->cur = m.block;
}
