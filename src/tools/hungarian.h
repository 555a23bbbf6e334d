/* hungarian.h - the assignment problem: given an n x n cost matrix, the permutation p minimising
 * sum_i cost[i][p[i]]. The Hungarian algorithm with potentials (Kuhn-Munkres in the O(n^3) form of
 * Jonker and Volgenant's shortest augmenting paths), in double precision. M-SMoE aligns a merged
 * expert's neurons to its group's dominant expert with it (tools/merge.c); tests/unit/test_hungarian.c
 * checks it against brute force. */
#ifndef MOE_TOOLS_HUNGARIAN_H
#define MOE_TOOLS_HUNGARIAN_H
#include "moe.h"

/* cost[n][n] row-major; perm[i] = the column assigned to row i. *total (may be NULL) = the minimum. */
moe_status moe_hungarian(const double *cost, int n, int *perm, double *total);
#endif
