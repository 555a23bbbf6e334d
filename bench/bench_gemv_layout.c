/* bench_gemv_layout.c - what the weight layout costs decode bandwidth: moe_matmul on row-major bf16
 * against the 4-row-panel layout of core/packed.h (MOE_BF16P, what --no-mmap loads), one token.
 *
 * Decode multiplies one token by every weight matrix once, each read cold from memory. moe_matmul
 * (n = 1) reads R rows side by side: R streams, each as long as a row. With 1-2 KiB rows (bf16 x
 * 512..1024 columns, the attention and fine-grained expert matrices of the models in PERFORMANCE.md) a
 * stream ends before the hardware prefetcher is up to speed. This benchmark times, on one thread, over
 * enough distinct matrices (512 MiB) that each is read from memory:
 *   - moe_matmul on the row-major layout (MOE_BF16);
 *   - moe_matmul on the packed layout (MOE_BF16P: groups of 4 rows stored as consecutive 16-column x
 *     4-row blocks, so a group is one sequential stream; two groups are read at once);
 *   - the yardstick: a plain sequential read of the same bytes (vector loads and adds).
 * Rounds are interleaved (each takes its best time over the rounds) because the VM's bandwidth moves;
 * the two products are compared, so the timed code computes the product.
 *
 * Usage: bench_gemv_layout [--rounds N]   (markdown table on stdout) */
#include "core/alloc.h"
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/matmul.h"
#include "core/packed.h"
#include "moe.h"
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx2"))) static uint32_t plain_read(const uint16_t *w, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a = _mm256_add_epi32(a, _mm256_loadu_si256((const __m256i *)(w + i)));
        b = _mm256_add_epi32(b, _mm256_loadu_si256((const __m256i *)(w + i + 16)));
    }
    a = _mm256_add_epi32(a, b);
    return (uint32_t)_mm256_extract_epi32(a, 0) ^ (uint32_t)_mm256_extract_epi32(a, 7);
}

int main(int argc, char **argv) {
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else { fprintf(stderr, "usage: bench_gemv_layout [--rounds N]\n"); return 1; }
    }
    if (rounds < 1) rounds = 1;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "bench_gemv_layout: the plain-read yardstick needs AVX2\n");
        return 1;
    }
    moe_set_threads(1);
    static const int shapes[][2] = {{768, 1024}, {1024, 768}, {2048, 512}, {4096, 1024}, {1024, 4096}, {4096, 4096}};
    const size_t total = (size_t)512 << 20;
    printf("One thread, bf16 weights, %d rounds (best of each), 512 MiB of distinct matrices per round; "
           "SIMD level of moe_matmul: %s.\n\n", rounds, moe_simd_name());
    printf("| matrix (rows x cols) | row bytes | row-major GB/s | packed GB/s | plain read GB/s | "
           "row-major / read | packed / read | max rel. diff |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int rows = shapes[si][0], cols = shapes[si][1];
        size_t per = (size_t)rows * cols, nm = total / (per * 2);
        uint16_t *w = moe_alloc(per * 2 * nm), *p = moe_alloc(per * 2 * nm);
        float *x = moe_alloc((size_t)cols * 4), *y0 = moe_alloc((size_t)rows * 4), *y1 = moe_alloc((size_t)rows * 4);
        if (!w || !p || !x || !y0 || !y1) { fprintf(stderr, "bench_gemv_layout: out of memory\n"); return 1; }
        uint64_t s = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < per * nm; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            w[i] = moe_f32_to_bf16(((float)(s >> 40) / (float)(1 << 24) - 0.5f) * 0.1f);
        }
        for (int k = 0; k < cols; k++) x[k] = sinf((float)k * 0.37f);
        for (size_t m = 0; m < nm; m++) moe_bf16p_pack(w + m * per, rows, cols, p + m * per);
        double best[3] = {1e30, 1e30, 1e30}, maxdiff = 0;
        volatile uint32_t sink = 0;
        for (int r = 0; r < rounds; r++) {
            double t0 = now_s();
            for (size_t m = 0; m < nm; m++) moe_matmul(y0, x, 1, MOE_BF16, w + m * per, rows, cols);
            double t1 = now_s();
            for (size_t m = 0; m < nm; m++) moe_matmul(y1, x, 1, MOE_BF16P, p + m * per, rows, cols);
            double t2 = now_s();
            for (size_t m = 0; m < nm; m++) sink ^= plain_read(w + m * per, per);
            double t3 = now_s();
            best[0] = fmin(best[0], t1 - t0);
            best[1] = fmin(best[1], t2 - t1);
            best[2] = fmin(best[2], t3 - t2);
        }
        /* both computed the last matrix's product (summed in another order) */
        double scale = 0;
        for (int i = 0; i < rows; i++) scale = fmax(scale, fabs(y0[i]));
        for (int i = 0; i < rows; i++) maxdiff = fmax(maxdiff, fabs(y0[i] - y1[i]) / (scale > 0 ? scale : 1));
        double gb = (double)per * 2 * nm / 1e9;
        printf("| %d x %d | %d | %.1f | %.1f | %.1f | %.0f%% | %.0f%% | %.1e |\n", rows, cols, cols * 2, gb / best[0],
               gb / best[1], gb / best[2], 100 * best[2] / best[0], 100 * best[2] / best[1], maxdiff);
        fflush(stdout);
        if (maxdiff > 1e-4) { fprintf(stderr, "bench_gemv_layout: the packed product differs\n"); return 1; }
        moe_free(w); moe_free(p); moe_free(x); moe_free(y0); moe_free(y1);
    }
    return 0;
}
