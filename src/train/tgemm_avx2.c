/* tgemm_avx2.c - the 6x16 register tile of moe_tgemm: 12 accumulators of 8 floats; per step of k, two
 * loads of B and six broadcasts of A feed twelve FMAs. A is addressed with a row and a column stride,
 * so a transposed A (the weight gradient's dy^T) needs no copy. Partial tiles use masked loads and stores
 * for columns, and simply skip the stores of missing rows (those rows re-read a valid row of A). */
#include "train/tgemm.h"
#include <immintrin.h>

static inline __m256i col_mask(int n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* Twelve named accumulators: written as an array indexed in a loop, GCC -O2 keeps them in memory. */
#define STEP(LOADB0, LOADB1, CS)                                                                      \
    for (int p = 0; p < K; p++) {                                                                     \
        const float *b = B + (size_t)p * ldb;                                                         \
        size_t q = (size_t)p * (CS);                                                                  \
        __m256 b0 = LOADB0, b1 = LOADB1, av;                                                          \
        av = _mm256_broadcast_ss(a0 + q); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
        av = _mm256_broadcast_ss(a1 + q); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
        av = _mm256_broadcast_ss(a2 + q); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
        av = _mm256_broadcast_ss(a3 + q); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
        av = _mm256_broadcast_ss(a4 + q); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
        av = _mm256_broadcast_ss(a5 + q); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51); \
    }

static inline void store_row(float *cr, __m256 v0, __m256 v1, __m256i m0, __m256i m1, int full, int accumulate) {
    if (full) {
        if (accumulate) {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
        }
        _mm256_storeu_ps(cr, v0);
        _mm256_storeu_ps(cr + 8, v1);
    } else {
        if (accumulate) {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cr, m0));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cr + 8, m1));
        }
        _mm256_maskstore_ps(cr, m0, v0);
        _mm256_maskstore_ps(cr + 8, m1, v1);
    }
}

void moe_tgemm_tile_avx2(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb,
                         int mr, int nr, int K, int accumulate) {
    const float *a0 = A, *a1 = A + (size_t)(mr > 1 ? 1 : 0) * rsa, *a2 = A + (size_t)(mr > 2 ? 2 : 0) * rsa;
    const float *a3 = A + (size_t)(mr > 3 ? 3 : 0) * rsa, *a4 = A + (size_t)(mr > 4 ? 4 : 0) * rsa;
    const float *a5 = A + (size_t)(mr > 5 ? 5 : 0) * rsa;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m256i m0 = col_mask(nr), m1 = col_mask(nr - 8);
    /* the usual row-major A (csa == 1) gets its own loop so that the compiler sees unit steps */
    if (nr == 16 && csa == 1) {
        STEP(_mm256_loadu_ps(b), _mm256_loadu_ps(b + 8), 1)
    } else if (nr == 16) {
        STEP(_mm256_loadu_ps(b), _mm256_loadu_ps(b + 8), csa)
    } else {
        STEP(_mm256_maskload_ps(b, m0), _mm256_maskload_ps(b + 8, m1), csa)
    }
    int full = nr == 16;
    store_row(C, c00, c01, m0, m1, full, accumulate);
    if (mr > 1) store_row(C + ldc, c10, c11, m0, m1, full, accumulate);
    if (mr > 2) store_row(C + 2 * ldc, c20, c21, m0, m1, full, accumulate);
    if (mr > 3) store_row(C + 3 * ldc, c30, c31, m0, m1, full, accumulate);
    if (mr > 4) store_row(C + 4 * ldc, c40, c41, m0, m1, full, accumulate);
    if (mr > 5) store_row(C + 5 * ldc, c50, c51, m0, m1, full, accumulate);
}
