/* test_hungarian.c - the assignment solver against brute force over all permutations on random
 * matrices of sizes 1..8 (real costs of mixed sign and magnitude, and small integer costs full of
 * ties), plus, on larger matrices, a valid permutation that no exchange of two assignments improves and
 * invariance of the optimum under adding a constant to a row or column. Seeds: a fixed one and one
 * drawn from the clock (printed, for replay). */
#include "tools/hungarian.h"
#include "testrand.h"
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Minimum over all permutations (Heap's algorithm). */
static double brute(const double *c, int n) {
    int p[8], cnt[8] = {0};
    for (int i = 0; i < n; i++) p[i] = i;
    double best = 0;
    for (int i = 0; i < n; i++) best += c[i * n + p[i]];
    int i = 0;
    while (i < n) {
        if (cnt[i] < i) {
            int j = i % 2 ? cnt[i] : 0, t = p[j];
            p[j] = p[i];
            p[i] = t;
            double s = 0;
            for (int r = 0; r < n; r++) s += c[r * n + p[r]];
            if (s < best) best = s;
            cnt[i]++;
            i = 0;
        } else {
            cnt[i++] = 0;
        }
    }
    return best;
}

static int is_perm(const int *p, int n) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static double sum_of(const double *c, int n, const int *p) {
    double s = 0;
    for (int i = 0; i < n; i++) s += c[(size_t)i * n + p[i]];
    return s;
}

static void run(uint64_t seed) {
    g_rng = seed;
    double c[64];
    int p[8];
    for (int trial = 0; trial < 400; trial++) {
        int n = 1 + trial % 8, ints = trial % 3 == 0;
        for (int i = 0; i < n * n; i++) c[i] = ints ? (double)rint_(0, 3) : (double)rfloat() * 10.0;
        double total;
        CHECK(moe_hungarian(c, n, p, &total) == MOE_OK, "solver failed");
        double want = brute(c, n);
        CHECK(is_perm(p, n), "seed %llu trial %d: not a permutation", (unsigned long long)seed, trial);
        CHECK(fabs(total - want) <= 1e-9 * (1 + fabs(want)), "seed %llu trial %d n %d: total %.17g, brute force %.17g",
              (unsigned long long)seed, trial, n, total, want);
        CHECK(fabs(sum_of(c, n, p) - total) <= 1e-9 * (1 + fabs(total)), "trial %d: reported total is not the permutation's", trial);
    }
    /* larger: 2-exchange optimality and invariance under row/column shifts */
    for (int trial = 0; trial < 6; trial++) {
        int n = 40 + 37 * trial;
        double *m = malloc(sizeof *m * (size_t)n * n), *m2 = malloc(sizeof *m2 * (size_t)n * n);
        int *q = malloc(sizeof *q * (size_t)n), *q2 = malloc(sizeof *q2 * (size_t)n);
        for (int i = 0; i < n * n; i++) m[i] = trial % 2 ? (double)rint_(0, 5) : (double)rfloat();
        double total, total2;
        CHECK(moe_hungarian(m, n, q, &total) == MOE_OK && is_perm(q, n), "n %d: no permutation", n);
        int improvable = 0;
        for (int a = 0; a < n && !improvable; a++)
            for (int b = a + 1; b < n; b++)
                if (m[(size_t)a * n + q[b]] + m[(size_t)b * n + q[a]] < m[(size_t)a * n + q[a]] + m[(size_t)b * n + q[b]] - 1e-9) {
                    improvable = 1;
                    break;
                }
        CHECK(!improvable, "n %d: exchanging two assignments lowers the cost", n);
        double shift = 0;
        for (int i = 0; i < n; i++) {   /* every row i gets + r_i, then every column j + c_j */
            double r = (double)rfloat() * 5.0;
            shift += r;
            for (int j = 0; j < n; j++) m2[(size_t)i * n + j] = m[(size_t)i * n + j] + r;
        }
        for (int j = 0; j < n; j++) {
            double col = (double)rfloat() * 5.0;
            shift += col;
            for (int i = 0; i < n; i++) m2[(size_t)i * n + j] += col;
        }
        CHECK(moe_hungarian(m2, n, q2, &total2) == MOE_OK, "n %d: solver failed", n);
        CHECK(fabs(total2 - (total + shift)) <= 1e-7 * (1 + fabs(total2)), "n %d: shifted optimum %.12g, expected %.12g", n, total2,
              total + shift);
        free(m); free(m2); free(q); free(q2);
    }
    /* a non-finite cost is refused */
    c[0] = NAN;
    c[1] = c[2] = c[3] = 1;
    CHECK(moe_hungarian(c, 2, p, NULL) != MOE_OK, "NaN cost accepted");
}

int main(void) {
    uint64_t fresh = (uint64_t)time(NULL) * 2654435761u;
    run(12345);
    printf("fresh seed %llu\n", (unsigned long long)fresh);
    run(fresh);
    if (failures) { printf("%d failures\n", failures); return 1; }
    printf("hungarian ok\n");
    return 0;
}
