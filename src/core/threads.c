/* threads.c - the thread count for all kernels. Kernels parallelise with OpenMP; this is the one
 * place that sets how many threads they use. */
#include "moe.h"
#include <omp.h>
#include <unistd.h>

static int g_threads = 0;

void moe_set_threads(int n) {
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    g_threads = n;
    omp_set_num_threads(n);
}

int moe_get_threads(void) {
    if (g_threads <= 0) moe_set_threads(0);
    return g_threads;
}
