/* tgemm.c - blocking, threading and dispatch of the training products (see tgemm.h), the scalar tile
 * used where AVX2 is missing, and the plain-loop oracle. K is cut in blocks of KC so that a 16-column
 * panel of B stays in L1 while the tiles of a block reuse it; tiles of one K block are spread over
 * threads, and blocks follow one another in order. */
#include "train/tgemm.h"
#include "core/cpu.h"
#include <omp.h>
#include <string.h>

#define MR 6
#define NR 16
#define KC 256

void moe_tgemm_ex_ref(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb, int M,
                      int N, int K, int accumulate) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) s += (double)A[(size_t)i * rsa + (size_t)p * csa] * B[(size_t)p * ldb + j];
            C[(size_t)i * ldc + j] = (float)(accumulate ? C[(size_t)i * ldc + j] + s : s);
        }
}

void moe_tgemm_ref(float *C, size_t ldc, const float *A, size_t lda, const float *B, size_t ldb, int M, int N, int K,
                   int accumulate) {
    moe_tgemm_ex_ref(C, ldc, A, lda, 1, B, ldb, M, N, K, accumulate);
}

/* Sums in double: the fallback is also the precise path the gradient checks run on. */
static void tile_scalar(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb,
                        int mr, int nr, int K, int accumulate) {
    double acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < K; p++) {
        const float *b = B + (size_t)p * ldb;
        for (int r = 0; r < mr; r++) {
            double a = A[(size_t)r * rsa + (size_t)p * csa];
            for (int j = 0; j < nr; j++) acc[r][j] += a * b[j];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float *c = C + (size_t)r * ldc + j;
            *c = (float)(accumulate ? *c + acc[r][j] : acc[r][j]);
        }
}

typedef void (*tile_fn)(float *, size_t, const float *, size_t, size_t, const float *, size_t, int, int, int, int);

void moe_tgemm(float *C, size_t ldc, const float *A, size_t lda, const float *B, size_t ldb, int M, int N, int K,
               int accumulate) {
    moe_tgemm_ex(C, ldc, A, lda, 1, B, ldb, M, N, K, accumulate);
}

void moe_tgemm_ex(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb, int M,
                  int N, int K, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    tile_fn tile = moe_simd_level() >= MOE_SIMD_AVX2 ? moe_tgemm_tile_avx2 : tile_scalar;
    int mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR, tiles = mt * nt;
    double work = (double)M * N * K;
    int nth = omp_in_parallel() || work < 200000 || tiles < 2 ? 1 : omp_get_max_threads();
    #pragma omp parallel num_threads(nth)
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC, acc = accumulate || k0 > 0;
        /* tiles go column-panel-major so that consecutive tiles of a thread share the panel of B */
        #pragma omp for schedule(static)
        for (int t = 0; t < tiles; t++) {
            int i = (t % mt) * MR, j = (t / mt) * NR;
            int mr = M - i < MR ? M - i : MR, nr = N - j < NR ? N - j : NR;
            tile(C + (size_t)i * ldc + j, ldc, A + (size_t)i * rsa + (size_t)k0 * csa, rsa, csa, B + (size_t)k0 * ldb + j,
                 ldb, mr, nr, kc, acc);
        }
    }
}

void moe_transpose(float *out, const float *in, int rows, int cols) {
    /* 8x8 blocks keep both sides' cache lines busy */
    for (int r0 = 0; r0 < rows; r0 += 8)
        for (int c0 = 0; c0 < cols; c0 += 8) {
            int r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < cols ? c0 + 8 : cols;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++) out[(size_t)c * rows + r] = in[(size_t)r * cols + c];
        }
}

void moe_linear_fwd(float *y, const float *x, const float *W, int n, int in, int out, float *scratch) {
    moe_transpose(scratch, W, out, in);   /* W^T [in][out] */
    moe_tgemm(y, (size_t)out, x, (size_t)in, scratch, (size_t)out, n, out, in, 0);
}

void moe_linear_bwd(float *dx, int dx_accumulate, float *dW, const float *dy, const float *x, const float *W, int n,
                    int in, int out) {
    if (dx) moe_tgemm(dx, (size_t)in, dy, (size_t)out, W, (size_t)in, n, in, out, dx_accumulate);
    if (dW) moe_tgemm_ex(dW, (size_t)in, dy, 1, (size_t)out, x, (size_t)in, out, in, n, 1);   /* dy^T in place */
}
