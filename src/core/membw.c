/* membw.c - a streaming-read loop: each thread sums its own contiguous slice with several
 * independent accumulators so that only memory, not the add latency, limits it. The sum is used so
 * the compiler cannot drop the loads. */
#include "core/membw.h"
#include "core/alloc.h"
#include "core/cpu.h"
#include <omp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t sum_slice(const uint64_t *p, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    for (; i < n; i++) a0 += p[i];
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

uint64_t moe_membw_sum_avx2(const uint64_t *p, size_t n);

volatile uint64_t moe_membw_sink;

double moe_measure_read_bandwidth(size_t bytes, int threads, int reps) {
    size_t n = bytes / 8;
    uint64_t *buf = moe_alloc(n * 8);
    if (!buf) return 0;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i; /* first touch by the reading threads */
    double best = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t total = 0;
        double t0 = now();
        #pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            int id = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t b = n * id / nt, e = n * (id + 1) / nt;
            b &= ~(size_t)3; /* 32-byte aligned slices for the AVX2 loads */
            if (id == nt - 1) e = n;
            else e &= ~(size_t)3;
            total += moe_simd_level() >= MOE_SIMD_AVX2 ? moe_membw_sum_avx2(buf + b, e - b) : sum_slice(buf + b, e - b);
        }
        double dt = now() - t0;
        moe_membw_sink = total;
        if (dt > 0 && bytes / dt > best) best = bytes / dt;
    }
    moe_free(buf);
    return best;
}
