/* test_sampler.c - the sampler's support and distribution for every flag, on fresh random logits. */
#include "model/sampler.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static void softmax(const float *l, double *p, int n, double T) {
    double m = -1e300, s = 0;
    for (int i = 0; i < n; i++) m = fmax(m, l[i]);
    for (int i = 0; i < n; i++) s += (p[i] = exp((l[i] - m) / T));
    for (int i = 0; i < n; i++) p[i] /= s;
}

/* Draw N samples; check frequencies against expected probabilities (0 = must never appear). */
static void check_dist(const char *what, const float *logits, int V, moe_sampler_params prm, const double *expect) {
    moe_sampler s;
    if (moe_sampler_init(&s, &prm, V)) { CHECK(0, "init"); return; }
    int N = 200000;
    int *cnt = calloc((size_t)V, sizeof(int));
    for (int i = 0; i < N; i++) cnt[moe_sampler_next(&s, logits)]++;
    for (int v = 0; v < V; v++) {
        double e = expect[v] * N, sd = sqrt(expect[v] * (1 - expect[v]) * N) + 1;
        if (expect[v] == 0) CHECK(cnt[v] == 0, "%s: token %d outside the allowed set drawn %d times", what, v, cnt[v]);
        else CHECK(fabs(cnt[v] - e) < 5 * sd, "%s: token %d drawn %d times, expected %.0f", what, v, cnt[v], e);
    }
    free(cnt);
    moe_sampler_free(&s);
}

int main(void) {
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u\n", seed);
    srand(seed);
    enum { V = 12 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(rand() / (double)RAND_MAX * 4 - 2);
    int order[V];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++) /* sort ids by logit, descending */
        for (int j = i + 1; j < V; j++)
            if (logits[order[j]] > logits[order[i]]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
    double p[V], e[V];

    /* greedy */
    moe_sampler_params g = {0, 0, 1, 0, 7};
    moe_sampler s;
    moe_sampler_init(&s, &g, V);
    CHECK(moe_sampler_next(&s, logits) == order[0], "temperature 0 must be argmax");
    moe_sampler_free(&s);

    /* plain temperature */
    for (double T = 0.5; T <= 2.0; T *= 2) {
        moe_sampler_params t = {T, 0, 1, 0, seed};
        softmax(logits, p, V, T);
        check_dist("temperature", logits, V, t, p);
    }
    /* top-k */
    {
        moe_sampler_params t = {1.0, 3, 1, 0, seed + 1};
        softmax(logits, p, V, 1.0);
        double z = p[order[0]] + p[order[1]] + p[order[2]];
        memset(e, 0, sizeof e);
        for (int i = 0; i < 3; i++) e[order[i]] = p[order[i]] / z;
        check_dist("top-k 3", logits, V, t, e);
        moe_sampler_params one = {1.0, 1, 1, 0, seed};
        moe_sampler_init(&s, &one, V);
        for (int i = 0; i < 100; i++) CHECK(moe_sampler_next(&s, logits) == order[0], "top-k 1 must be argmax");
        moe_sampler_free(&s);
    }
    /* top-p: the smallest prefix of the sorted distribution with mass >= p */
    {
        softmax(logits, p, V, 1.0);
        double target = p[order[0]] + p[order[1]] + 0.5 * p[order[2]], c = 0;
        int m = 0;
        while (m < V) { c += p[order[m++]]; if (c >= target) break; }
        memset(e, 0, sizeof e);
        double z = 0;
        for (int i = 0; i < m; i++) z += p[order[i]];
        for (int i = 0; i < m; i++) e[order[i]] = p[order[i]] / z;
        moe_sampler_params t = {1.0, 0, target, 0, seed + 2};
        check_dist("top-p", logits, V, t, e);
    }
    /* min-p */
    {
        softmax(logits, p, V, 1.0);
        double mp = 0.3, thr = mp * p[order[0]], z = 0;
        memset(e, 0, sizeof e);
        for (int i = 0; i < V; i++) if (p[i] >= thr) z += p[i];
        for (int i = 0; i < V; i++) if (p[i] >= thr) e[i] = p[i] / z;
        moe_sampler_params t = {1.0, 0, 1, mp, seed + 3};
        check_dist("min-p", logits, V, t, e);
    }
    /* a seed reproduces the sequence; another seed gives another one */
    {
        moe_sampler_params t = {1.0, 0, 1, 0, 42};
        moe_sampler a, b, c;
        moe_sampler_init(&a, &t, V);
        moe_sampler_init(&b, &t, V);
        t.seed = 43;
        moe_sampler_init(&c, &t, V);
        int same = 1, differ = 0;
        for (int i = 0; i < 200; i++) {
            int x = moe_sampler_next(&a, logits), y = moe_sampler_next(&b, logits), z = moe_sampler_next(&c, logits);
            same &= x == y;
            differ |= x != z;
        }
        CHECK(same, "same seed must give the same tokens");
        CHECK(differ, "different seeds should give different tokens");
        moe_sampler_free(&a); moe_sampler_free(&b); moe_sampler_free(&c);
    }
    /* restricted to some ids (a tokenizer smaller than the model): never another, greedy or not,
     * and the distribution renormalised over the allowed ones */
    {
        unsigned char ok[V];
        for (int i = 0; i < V; i++) ok[i] = i % 3 != 0 && i != order[0];   /* the best id is not allowed */
        moe_sampler_params t = {1.0, 0, 1, 0, seed + 4};
        double z = 0;
        softmax(logits, p, V, 1.0);
        for (int i = 0; i < V; i++) z += ok[i] ? p[i] : 0;
        for (int i = 0; i < V; i++) e[i] = ok[i] ? p[i] / z : 0;
        moe_sampler r;
        moe_sampler_init(&r, &t, V);
        CHECK(moe_sampler_restrict(&r, ok) == 0, "restrict");
        int N = 200000, *cnt = calloc(V, sizeof(int));
        for (int i = 0; i < N; i++) cnt[moe_sampler_next(&r, logits)]++;
        for (int v = 0; v < V; v++) {
            double sd = sqrt(e[v] * (1 - e[v]) * N) + 1;
            if (!ok[v]) CHECK(cnt[v] == 0, "restricted: id %d drawn %d times", v, cnt[v]);
            else CHECK(fabs(cnt[v] - e[v] * N) < 5 * sd, "restricted: id %d drawn %d times, expected %.0f", v, cnt[v], e[v] * N);
        }
        free(cnt);
        moe_sampler_free(&r);
        moe_sampler_params gk[] = {{0, 0, 1, 0, 1}, {1.0, 1, 1, 0, 1}, {0.7, 2, 0.9, 0.1, 1}};
        int best = -1;
        for (int i = 0; i < V; i++) if (ok[order[i]]) { best = order[i]; break; }
        for (int k = 0; k < 3; k++) {
            moe_sampler_init(&r, &gk[k], V);
            moe_sampler_restrict(&r, ok);
            for (int i = 0; i < 1000; i++) {
                int x = moe_sampler_next(&r, logits);
                CHECK(ok[x], "restricted (setting %d): id %d is not allowed", k, x);
                if (k < 2) CHECK(x == best, "restricted greedy / top-k 1 must be the best allowed id %d, got %d", best, x);
            }
            moe_sampler_free(&r);
        }
        unsigned char none[V];
        memset(none, 0, sizeof none);
        moe_sampler_init(&r, &gk[0], V);
        CHECK(moe_sampler_restrict(&r, none) == -1, "restricting to nothing must fail");
        moe_sampler_free(&r);
    }
    if (failures) { printf("%d failures\n", failures); return 1; }
    printf("sampler ok\n");
    return 0;
}
