/* test_expert_store.c - the on-disk expert store against the bytes of its files.
 *  1. layouts: adjacent matrices (one read), any order, gaps, matrices in different files;
 *  2. random schedules of route / prefetch / predict / acquire / release under every policy, budgets
 *     from one slot to all experts, with and without reader threads and O_DIRECT: every acquire must
 *     return exactly the file's bytes, the slots must fit the budget, the counters must add up;
 *  3. eviction order of each policy on small hand-made sequences;
 *  4. bad input: experts past the end of a file, a file truncated after opening, a budget below one
 *     expert. */
#include "core/error.h"
#include "moe/expert_store_disk.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

enum { L = 3, E = 5, NF = 2 };
static char paths[NF][64];
static unsigned char *content[NF];
static size_t fsz[NF];
static int file_of[L][E][3];
static uint64_t off_of[L][E][3];
static moe_ffn_weights w_of[L][E];

static void make_files(void) {
    for (int f = 0; f < NF; f++) {
        snprintf(paths[f], sizeof paths[f], "/tmp/moe_es_%d_XXXXXX", f);
        int fd = mkstemp(paths[f]);
        fsz[f] = 3u << 20;
        content[f] = malloc(fsz[f]);
        for (size_t i = 0; i < fsz[f]; i++) content[f][i] = (unsigned char)(next() >> 33);
        if (write(fd, content[f], fsz[f]) != (ssize_t)fsz[f]) { perror("write"); exit(1); }
        close(fd);
    }
    /* lay experts out in assorted ways */
    uint64_t pos[NF] = {100, 4096 * 3 + 8};
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            int style = (l * E + e) % 4; /* 0 adjacent, 1 reversed, 2 gaps, 3 split across files */
            int ff = 8 + (int)(next() % 40), d = 16 + (int)(next() % 24);
            moe_ffn_weights *w = &w_of[l][e];
            memset(w, 0, sizeof *w);
            moe_tensor *t[3] = {&w->gate, &w->up, &w->down};
            for (int i = 0; i < 3; i++) {
                t[i]->dtype = MOE_F32;
                t[i]->ndim = 2;
                t[i]->shape[0] = i < 2 ? ff : d;
                t[i]->shape[1] = i < 2 ? d : ff;
                t[i]->nbytes = (size_t)ff * d * 4;
            }
            int order[3] = {0, 1, 2};
            if (style == 1) { order[0] = 2; order[1] = 0; order[2] = 1; }
            for (int j = 0; j < 3; j++) {
                int i = order[j], f = style == 3 ? j % 2 : 0;
                if (style == 2) pos[f] += 5000 + next() % 9000;
                file_of[l][e][i] = f;
                off_of[l][e][i] = pos[f];
                pos[f] += t[i]->nbytes;
            }
        }
    if (pos[0] > fsz[0] || pos[1] > fsz[1]) { printf("test layout too large\n"); exit(1); }
}

static moe_store *open_store(int64_t budget, const char *policy, int prefetch, int direct) {
    const char *p[NF] = {paths[0], paths[1]};
    moe_disk_store_config cfg = {L, E, 2, budget, moe_cache_policy_find(policy), prefetch, 1, direct, 2};
    moe_store *s;
    if (moe_store_disk_new(&cfg, p, NF, &s)) { printf("new: %s\n", moe_last_error()); return NULL; }
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++)
            if (moe_store_disk_add(s, l, e, file_of[l][e], &w_of[l][e], off_of[l][e])) {
                printf("add: %s\n", moe_last_error());
                moe_store_destroy(s);
                return NULL;
            }
    if (moe_store_disk_finish(s)) { printf("finish: %s\n", moe_last_error()); moe_store_destroy(s); return NULL; }
    return s;
}

static int check_expert(moe_store *s, int l, int e) {
    moe_ffn_weights w;
    if (moe_store_acquire(s, l, e, &w)) { printf("acquire %d/%d: %s\n", l, e, moe_last_error()); return 0; }
    const moe_tensor *t[3] = {&w.gate, &w.up, &w.down};
    int ok = 1;
    for (int i = 0; i < 3; i++) {
        const unsigned char *want = content[file_of[l][e][i]] + off_of[l][e][i];
        ok &= t[i]->nbytes == w_of[l][e].gate.nbytes && memcmp(t[i]->data, want, t[i]->nbytes) == 0;
        ok &= t[i]->shape[0] == (i == 0 ? w_of[l][e].gate.shape[0] : i == 1 ? w_of[l][e].up.shape[0] : w_of[l][e].down.shape[0]);
    }
    moe_store_release(s, l, e);
    return ok;
}

static const char *k_policies[] = {"lru", "lfu", "activation", "fate", "none"};

static void test_random(void) {
    uint64_t all = 0;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) all += 3 * w_of[l][e].gate.nbytes + 3 * 3 * 4096;
    for (int trial = 0; trial < 60; trial++) {
        const char *pol = k_policies[trial % 5];
        int prefetch = (trial / 5) % 2, direct = trial % 7 == 3;
        int64_t budget = (int64_t)(30000 + next() % all);
        moe_store *s = open_store(budget, pol, prefetch, direct);
        CHECK(s, "open_store %s", moe_last_error());
        if (!s) continue;
        moe_offload_stats st;
        moe_store_disk_stats(s, &st);
        CHECK((int64_t)(st.n_slots * st.slot_bytes) <= budget, "slots %d x %llu exceed budget %lld", st.n_slots,
              (unsigned long long)st.slot_bytes, (long long)budget);
        int pos = 0, bad = 0;
        for (int step = 0; step < 200; step++) {
            int l = step % L, n = 1 + (int)(next() % 3), ex[3], cnt[3];
            for (int i = 0; i < n; i++) { ex[i] = (int)(next() % E); cnt[i] = 1 + (int)(next() % 4); }
            if (n > 1 && ex[1] == ex[0]) n = 1;
            if (n > 2 && (ex[2] == ex[0] || ex[2] == ex[1])) n = 2;
            if (l == 0 && next() % 20 == 0) pos = 0;
            moe_store_route(s, l, pos, 4, ex, cnt, n);
            moe_store_prefetch(s, l, ex, n);
            if (s->predict_next && l + 1 < L) {
                int guess[2] = {(int)(next() % E), (int)(next() % E)};
                moe_store_predict(s, l + 1, guess, 2);
            }
            for (int i = 0; i < n; i++) bad += !check_expert(s, l, ex[i]);
            if (l == L - 1) pos += 4;
        }
        moe_store_disk_stats(s, &st);
        CHECK(!bad, "%s prefetch %d direct %d budget %lld: %d acquisitions returned wrong bytes", pol, prefetch, direct,
              (long long)budget, bad);
        CHECK(st.hits + st.inflight + st.misses == st.lookups, "counters: %llu + %llu + %llu != %llu",
              (unsigned long long)st.hits, (unsigned long long)st.inflight, (unsigned long long)st.misses,
              (unsigned long long)st.lookups);
        CHECK(st.predicted_used <= st.needed_predicted, "prediction counters");
        if (!strcmp(pol, "none") && !prefetch) CHECK(st.hits == 0, "policy none must never hit (%llu hits)", (unsigned long long)st.hits);
        moe_store_destroy(s);
    }
}

/* hit (1) or not (0) for one acquisition */
static int hit(moe_store *s, int l, int e) {
    moe_offload_stats a, b;
    moe_store_disk_stats(s, &a);
    check_expert(s, l, e);
    moe_store_disk_stats(s, &b);
    return b.hits > a.hits;
}

static int64_t slots_budget(int n) {
    moe_store *s = open_store(1ll << 30, "lru", 0, 0);
    moe_offload_stats st;
    moe_store_disk_stats(s, &st);
    moe_store_destroy(s);
    return (int64_t)st.slot_bytes * n;
}

static void test_policies(void) {
    int64_t two = slots_budget(2);
    /* A A A B C then A: LRU evicted A for C (A least recent), LFU evicted B (A used 3 times) */
    for (int p = 0; p < 2; p++) {
        moe_store *s = open_store(two, p ? "lfu" : "lru", 0, 0);
        hit(s, 0, 0); hit(s, 0, 0); hit(s, 0, 0); hit(s, 0, 1); hit(s, 0, 2);
        int h = hit(s, 0, 0);
        CHECK(h == p, "%s: after A A A B C, A should %s", p ? "lfu" : "lru", p ? "hit" : "miss");
        moe_store_destroy(s);
    }
    /* X (layer 0) then Y (layer 2) then Z (layer 1): LRU evicts X, Fate keeps the shallow X */
    for (int p = 0; p < 2; p++) {
        moe_store *s = open_store(two, p ? "fate" : "lru", 0, 0);
        hit(s, 0, 3); hit(s, 2, 3); hit(s, 1, 3);
        int h = hit(s, 0, 3);
        CHECK(h == p, "%s: shallow expert should %s", p ? "fate" : "lru", p ? "hit" : "miss");
        moe_store_destroy(s);
    }
    /* activation: A serves 10 tokens of this sequence, B one; A B (B more recent) then C: keep A */
    for (int p = 0; p < 2; p++) {
        moe_store *s = open_store(two, p ? "activation" : "lru", 0, 0);
        int ex[2] = {0, 1}, cnt[2] = {10, 1};
        moe_store_route(s, 0, 0, 10, ex, cnt, 2);
        hit(s, 0, 0); hit(s, 0, 1);
        int c2 = 2, one = 1;
        moe_store_route(s, 0, 10, 1, &c2, &one, 1);
        hit(s, 0, 2);
        int h = hit(s, 0, 0);
        CHECK(h == p, "%s: the sequence's most used expert should %s", p ? "activation" : "lru", p ? "hit" : "miss");
        moe_store_destroy(s);
    }
    /* none: nothing survives */
    moe_store *s = open_store(two, "none", 0, 0);
    hit(s, 1, 1);
    CHECK(!hit(s, 1, 1), "none: second use must miss");
    moe_store_destroy(s);
    /* prediction accuracy counts and prefetched experts hit */
    s = open_store(slots_budget(6), "lru", 1, 0);
    int g[2] = {2, 4}, u[2] = {2, 3}, c[2] = {1, 1};
    moe_store_predict(s, 1, g, 2);
    moe_store_route(s, 1, 0, 1, u, c, 2);
    int h = hit(s, 1, 2);
    moe_offload_stats st;
    moe_store_disk_stats(s, &st);
    CHECK(st.predicted == 2 && st.predicted_used == 1 && st.needed_predicted == 2, "prediction counters %llu %llu %llu",
          (unsigned long long)st.predicted, (unsigned long long)st.predicted_used, (unsigned long long)st.needed_predicted);
    CHECK(h || st.inflight == 1, "a predicted expert must be resident or in flight");
    moe_store_destroy(s);
}

static void test_bad(void) {
    const char *p[NF] = {paths[0], paths[1]};
    moe_disk_store_config cfg = {L, E, 2, 1 << 30, NULL, 0, 0, 0, 0};
    moe_store *s;
    CHECK(moe_store_disk_new(&cfg, p, NF, &s) == MOE_OK, "new");
    uint64_t off[3] = {fsz[0] - 10, 0, 0};
    int f[3] = {0, 0, 0};
    moe_status st = moe_store_disk_add(s, 0, 0, f, &w_of[0][0], off);
    CHECK(st == MOE_EINPUT && strstr(moe_last_error(), "past the end"), "expert past the end: %d %s", st, moe_last_error());
    moe_store_destroy(s);
    /* budget below one expert */
    s = NULL;
    moe_store *t = open_store(1000, "lru", 0, 0);
    CHECK(t == NULL && strstr(moe_last_error(), "smaller than one expert"), "tiny budget accepted: %s", moe_last_error());
    moe_store_destroy(t);
    /* truncate the file under an open store: acquire must fail cleanly, not crash */
    for (int prefetch = 0; prefetch <= 1; prefetch++) {
        s = open_store(slots_budget(3), "lru", prefetch, 0);
        if (truncate(paths[0], 4096) != 0) perror("truncate");
        int ex[1] = {4}, cnt[1] = {1};
        moe_store_route(s, 2, 0, 1, ex, cnt, 1);
        moe_store_prefetch(s, 2, ex, 1);
        moe_ffn_weights w;
        st = moe_store_acquire(s, 2, 4, &w);
        CHECK(st == MOE_EINPUT && strstr(moe_last_error(), "truncated"), "truncated file: %d %s", st, moe_last_error());
        moe_store_destroy(s);
        int fd = open(paths[0], O_WRONLY);
        if (fd < 0 || pwrite(fd, content[0], fsz[0], 0) != (ssize_t)fsz[0]) perror("restore");
        close(fd);
    }
    /* a missing file */
    const char *missing[1] = {"/nonexistent/moe_expert_file"};
    CHECK(moe_store_disk_new(&cfg, missing, 1, &s) == MOE_EIO && strstr(moe_last_error(), "/nonexistent/moe_expert_file"),
          "missing file: %s", moe_last_error());
}

int main(void) {
    make_files();
    test_random();
    test_policies();
    test_bad();
    for (int f = 0; f < NF; f++) { unlink(paths[f]); free(content[f]); }
    if (fails) { printf("%d failures\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
