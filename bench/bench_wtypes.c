/* bench_wtypes.c - decode and prefill speed of every weight type in the dtype table, next to this
 * machine's read bandwidth (the decode roofline of a kernel that must read W once per token).
 *
 * Decode: one x row times matrices of rows x cols (the shape of a mid-size expert or projection),
 * cycled through enough copies (>= 512 MiB) that every product reads W from memory as a real decode
 * step does; reported as GB/s of W read and as a % of a plain vector read of the same bytes. The
 * read probe and the kernel run back to back in each repetition, each side keeps its best time
 * (the machine is shared and noisy), and the % divides those bests.
 * Prefill: 128 x rows times one matrix (L2/L3 resident), GFLOP/s (the block types dequantize tiles and
 * call the f32 kernel, so f32's rate is their ceiling).
 * Each type's matrices come from its own writer (`quantize` in the table) on Gaussian weights; the
 * decode result is checked against the scalar kernel so that the timed code computes the product.
 * Usage: bench_wtypes [--threads N] [--reps R] [--rows R --cols C] [--types a,b,...] [--budget-mib M]
 * (markdown on stdout; --budget-mib 1 keeps the matrices in cache, which measures compute alone) */
#include "core/alloc.h"
#include "core/dtype_traits.h"
#include "moe.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((target("avx2"))) static float read_avx2(const float *p, size_t nf) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= nf; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

static volatile float g_sink;

/* seconds to read bytes of buf with nt threads */
static double read_time(const float *buf, size_t bytes, int nt) {
    double t0 = now();
    float part = 0;
    #pragma omp parallel num_threads(nt) reduction(+ : part)
    {
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        size_t nf = bytes / 4, per = nf / (size_t)n / 32 * 32;
        part += read_avx2(buf + per * (size_t)id, per);
    }
    g_sink = part;
    return now() - t0;
}

static uint64_t g_rng = 11;
static float gauss(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    double u = ((g_rng >> 11) + 0.5) / 9007199254740992.0;
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    double v = ((g_rng >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static const char *k_default = "f32,bf16,f16,q8_0,q4,ggml_q8_0,ggml_q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k,mxfp4";

int main(int argc, char **argv) {
    int nt = 2, reps = 5, rows = 2048, cols = 2048, budget_mib = 512;
    const char *types = k_default;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) nt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows")) rows = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cols")) cols = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--types")) types = argv[i + 1];
        else if (!strcmp(argv[i], "--budget-mib")) budget_mib = atoi(argv[i + 1]);
    }
    moe_set_threads(nt);
    size_t budget = (size_t)budget_mib << 20;   /* small budgets keep W in cache: the kernels' compute rate */
    float *probe = moe_alloc(budget);
    for (size_t i = 0; i < budget / 4; i++) probe[i] = (float)(i & 1023);
    float *x = moe_alloc(sizeof(float) * (size_t)cols * 128), *wf = moe_alloc(sizeof(float) * (size_t)cols);
    float *y = moe_alloc(sizeof(float) * (size_t)rows * 128), *yr = moe_alloc(sizeof(float) * (size_t)rows);
    for (int i = 0; i < cols * 128; i++) x[i] = gauss();
    printf("| type | bits/weight | decode GB/s | read GB/s | decode / read | decode Gweights/s | prefill GFLOP/s |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    char list[512];
    snprintf(list, sizeof list, "%s", types);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int dt = moe_dtype_from_name(tok);
        const moe_dtype_traits *tr = moe_dtype_traits_of((moe_dtype)(dt < 0 ? 0 : dt));
        if (dt < 0 || !tr->quantize || !moe_dtype_is_matrix((moe_dtype)dt) || cols % tr->block) {
            fprintf(stderr, "skip %s\n", tok);
            continue;
        }
        size_t rb = moe_dtype_row_bytes((moe_dtype)dt, cols), mat = rb * (size_t)rows;
        int copies = (int)(budget / mat);
        if (copies < 1) copies = 1;
        unsigned char *w = moe_alloc(mat * (size_t)copies);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) wf[c] = gauss() / sqrtf((float)cols);
            tr->quantize(wf, cols, w + (size_t)r * rb);
        }
        for (int c = 1; c < copies; c++) memcpy(w + (size_t)c * mat, w, mat);
        /* the timed kernel computes the product: compare one call with the scalar kernel */
        moe_matmul(y, x, 1, (moe_dtype)dt, w, rows, cols);
        tr->gemm[0](yr, (size_t)rows, x, (size_t)cols, 1, w, cols, 0, rows);
        double maxd = 0, maxr = 0;
        for (int r = 0; r < rows; r++) { maxd = fmax(maxd, fabs(y[r] - yr[r])); maxr = fmax(maxr, fabs(yr[r])); }
        if (!(maxd <= 0.05 * maxr)) { fprintf(stderr, "%s: product check failed (%g vs %g)\n", tok, maxd, maxr); return 1; }
        double best_k = 1e30, best_r = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            best_r = fmin(best_r, read_time(probe, mat * (size_t)copies, nt));
            double t0 = now();
            for (int c = 0; c < copies; c++) moe_matmul(y, x, 1, (moe_dtype)dt, w + (size_t)c * mat, rows, cols);
            best_k = fmin(best_k, now() - t0);
        }
        double bytes = (double)mat * copies;
        /* prefill: 128 rows, one resident matrix */
        double best_p = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            moe_matmul(y, x, 128, (moe_dtype)dt, w, rows, cols);
            best_p = fmin(best_p, now() - t0);
        }
        double gflops = 2.0 * 128 * rows * cols / best_p * 1e-9;
        printf("| %s | %.2f | %.1f | %.1f | %.0f%% | %.2f | %.1f |\n", tok, 8.0 * tr->block_bytes / tr->block,
               bytes / best_k * 1e-9, bytes / best_r * 1e-9, 100.0 * best_r / best_k,
               (double)rows * cols * copies / best_k * 1e-9, gflops);
        fflush(stdout);
        moe_free(w);
    }
    printf("\n%d threads, SIMD level %d, %d x %d matrices, best of %d\n", nt, (int)moe_simd_level(), rows, cols, reps);
    moe_free(probe); moe_free(x); moe_free(wf); moe_free(y); moe_free(yr);
    return 0;
}
