/* hungarian.c - minimum-cost perfect matching (hungarian.h).
 *
 * Rows are added one at a time; for each, Dijkstra-like growth over columns with reduced costs
 * cost[i][j] - u[i] - v[j] finds the cheapest augmenting path, the potentials u, v are updated so that
 * reduced costs stay non-negative and are zero on the matching, and the path is flipped. n rows of
 * O(n^2) each: O(n^3) time, O(n) memory besides the matrix. Index 0 of the arrays is a virtual column
 * that starts every path. */
#include "tools/hungarian.h"
#include "core/error.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>

moe_status moe_hungarian(const double *cost, int n, int *perm, double *total) {
    if (n <= 0) { if (total) *total = 0; return MOE_OK; }
    for (size_t i = 0; i < (size_t)n * n; i++)
        if (!isfinite(cost[i])) return moe_fail(MOE_EINTERNAL, "assignment: cost matrix has a non-finite entry");
    double *u = calloc((size_t)n + 1, sizeof *u), *v = calloc((size_t)n + 1, sizeof *v), *minv = malloc(sizeof *minv * ((size_t)n + 1));
    int *match = calloc((size_t)n + 1, sizeof *match), *way = calloc((size_t)n + 1, sizeof *way);   /* match[col] = row (1-based) */
    char *used = malloc((size_t)n + 1);
    if (!u || !v || !minv || !match || !way || !used) {
        free(u); free(v); free(minv); free(match); free(way); free(used);
        return moe_fail(MOE_ENOMEM, "assignment: out of memory for %d x %d", n, n);
    }
    for (int i = 1; i <= n; i++) {
        match[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++) { minv[j] = DBL_MAX; used[j] = 0; }
        do {
            used[j0] = 1;
            int i0 = match[j0], j1 = 0;
            double delta = DBL_MAX;
            for (int j = 1; j <= n; j++) {
                if (used[j]) continue;
                double cur = cost[(size_t)(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                if (minv[j] < delta) { delta = minv[j]; j1 = j; }
            }
            for (int j = 0; j <= n; j++) {
                if (used[j]) { u[match[j]] += delta; v[j] -= delta; }
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (match[j0] != 0);
        do {   /* flip the augmenting path */
            int j1 = way[j0];
            match[j0] = match[j1];
            j0 = j1;
        } while (j0);
    }
    double sum = 0;
    for (int j = 1; j <= n; j++) {
        perm[match[j] - 1] = j - 1;
        sum += cost[(size_t)(match[j] - 1) * n + (j - 1)];
    }
    if (total) *total = sum;
    free(u); free(v); free(minv); free(match); free(way); free(used);
    return MOE_OK;
}
