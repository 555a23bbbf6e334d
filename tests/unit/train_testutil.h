/* train_testutil.h - shared helpers of the training tests: tiny configs, random buffers, scratch
 * folders. Header-only (static) so every test stays one executable. */
#ifndef MOE_TESTS_TRAIN_TESTUTIL_H
#define MOE_TESTS_TRAIN_TESTUTIL_H
#include "moe/router.h"
#include "train/tconfig.h"
#include "train/tmodel.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fail __attribute__((unused));
#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); g_fail = 1; } } while (0)

static uint64_t g_rng __attribute__((unused)) = 0x1234567u;
static inline double urand(void) { return (double)(moe_rng_next(&g_rng) >> 11) / 9007199254740992.0; }
static inline float frand(float a) { return (float)((urand() * 2 - 1) * a); }
static inline void fill(float *x, size_t n, float a) { for (size_t i = 0; i < n; i++) x[i] = frand(a); }

/* A tiny config: 2 layers (the first dense), 4 experts top-2, one shared expert. */
static inline void tiny_config(moe_tconfig *c, const char *router) {
    moe_tconfig_defaults(c);
    c->vocab = 32; c->d_model = 16; c->n_layers = 2; c->n_heads = 2; c->n_kv_heads = 1; c->seq_len = 8;
    c->d_ff = 24; c->n_dense_layers = 1; c->n_experts = 4; c->top_k = 2; c->d_expert = 8; c->n_shared = 1;
    c->batch = 2; c->init_std = 0.3; c->seed = 7;
    snprintf(c->router, sizeof c->router, "%s", router);
    snprintf(c->layout, sizeof c->layout, "auto");
}

/* Make norms and buffers non-trivial so that every parameter matters. */
static inline void perturb(moe_tparams *p, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < p->n; i++) {
        const moe_tparam *t = &p->t[i];
        float *v = p->val + t->offset;
        if (t->init == MOE_INIT_ONES)
            for (size_t j = 0; j < t->numel; j++) v[j] = 1.0f + 0.2f * (float)((double)(moe_rng_next(&s) >> 11) / 9007199254740992.0 - 0.5);
        else if (t->init == MOE_INIT_ZEROS)
            for (size_t j = 0; j < t->numel; j++) v[j] = 0.05f * (float)((double)(moe_rng_next(&s) >> 11) / 9007199254740992.0 - 0.5);
    }
}

static inline void random_tokens(int32_t *t, int n, int vocab) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(moe_rng_next(&g_rng) % (uint64_t)vocab);
}

static inline const char *scratch_dir(const char *name) {
    static char buf[512];
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(buf, sizeof buf, "%s/moe_test_%s_%d", base, name, (int)getpid());
    return buf;
}
#endif
