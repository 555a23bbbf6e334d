/* ep.c - placement of experts on ranks for expert parallelism (see ep.h). */
#include "moe/ep.h"
#include <stdlib.h>

void moe_ep_place_round_robin(int n_layers, int n_experts, int size, int *owner) {
    for (int l = 0; l < n_layers; l++)
        for (int e = 0; e < n_experts; e++) owner[(size_t)l * n_experts + e] = e % size;
}

/* Longest-processing-time first with a capacity: the classic greedy for makespan, which keeps the
 * busiest rank within 4/3 of the optimum without the cap; the cap keeps expert memory even. */
void moe_ep_place_balanced(int n_layers, int n_experts, int size, const uint64_t *load, int *owner) {
    int cap = (n_experts + size - 1) / size;
    int *order = malloc(sizeof(int) * (size_t)(n_experts > 0 ? n_experts : 1));
    uint64_t *sum = calloc((size_t)size, sizeof *sum);
    int *held = calloc((size_t)size, sizeof *held);
    if (!order || !sum || !held) {   /* no memory for the greedy: round robin is still a valid placement */
        free(order); free(sum); free(held);
        moe_ep_place_round_robin(n_layers, n_experts, size, owner);
        return;
    }
    for (int l = 0; l < n_layers; l++) {
        const uint64_t *ld = load + (size_t)l * n_experts;
        for (int e = 0; e < n_experts; e++) order[e] = e;
        for (int i = 1; i < n_experts; i++) {   /* insertion sort: by load descending, then expert id */
            int e = order[i], j = i - 1;
            while (j >= 0 && ld[order[j]] < ld[e]) { order[j + 1] = order[j]; j--; }
            order[j + 1] = e;
        }
        for (int q = 0; q < size; q++) { sum[q] = 0; held[q] = 0; }
        for (int i = 0; i < n_experts; i++) {
            int e = order[i], best = -1;
            for (int q = 0; q < size; q++)
                if (held[q] < cap && (best < 0 || sum[q] < sum[best])) best = q;
            owner[(size_t)l * n_experts + e] = best;
            sum[best] += ld[e];
            held[best]++;
        }
    }
    free(order); free(sum); free(held);
}
