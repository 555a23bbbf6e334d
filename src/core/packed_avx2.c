/* packed_avx2.c - the one-token kernel of 4-row-panel bf16 matrices (packed.h): two groups of 4 rows,
 * from the two halves of the row range, stream side by side. */
#include "core/packed.h"
#include <immintrin.h>

static inline __m256 widen(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* (j, j+4), then (j, j+2), then (0, 1): the reduction tree of moe_bf16p_gemv_row */
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* rows 4a..4a+3 and, if b >= 0, 4b..4b+3 */
static inline void two_groups(float *y, const float *x, const uint16_t *w, int in, int a, int b) {
    const uint16_t *p = w + (size_t)a * 4 * in, *q = w + (size_t)(b >= 0 ? b : a) * 4 * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int k = 0; k < in; k += 16, p += 64, q += 64) {
        __m256 xl = _mm256_loadu_ps(x + k), xh = _mm256_loadu_ps(x + k + 8);
        a0 = _mm256_fmadd_ps(widen(p), xl, a0);
        a1 = _mm256_fmadd_ps(widen(p + 16), xl, a1);
        a2 = _mm256_fmadd_ps(widen(p + 32), xl, a2);
        a3 = _mm256_fmadd_ps(widen(p + 48), xl, a3);
        if (b >= 0) {
            b0 = _mm256_fmadd_ps(widen(q), xl, b0);
            b1 = _mm256_fmadd_ps(widen(q + 16), xl, b1);
            b2 = _mm256_fmadd_ps(widen(q + 32), xl, b2);
            b3 = _mm256_fmadd_ps(widen(q + 48), xl, b3);
        }
        a0 = _mm256_fmadd_ps(widen(p + 8), xh, a0);
        a1 = _mm256_fmadd_ps(widen(p + 24), xh, a1);
        a2 = _mm256_fmadd_ps(widen(p + 40), xh, a2);
        a3 = _mm256_fmadd_ps(widen(p + 56), xh, a3);
        if (b >= 0) {
            b0 = _mm256_fmadd_ps(widen(q + 8), xh, b0);
            b1 = _mm256_fmadd_ps(widen(q + 24), xh, b1);
            b2 = _mm256_fmadd_ps(widen(q + 40), xh, b2);
            b3 = _mm256_fmadd_ps(widen(q + 56), xh, b3);
        }
    }
    float *ya = y + (size_t)a * 4;
    ya[0] = hsum(a0); ya[1] = hsum(a1); ya[2] = hsum(a2); ya[3] = hsum(a3);
    if (b >= 0) {
        float *yb = y + (size_t)b * 4;
        yb[0] = hsum(b0); yb[1] = hsum(b1); yb[2] = hsum(b2); yb[3] = hsum(b3);
    }
}

void moe_gemm_bf16p_avx2(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1) {
    if (n != 1) { moe_bf16p_gemm_rows(y, ldy, x, ldx, n, w, in, o0, o1); return; }
    const uint16_t *W = w;
    int g0 = (o0 + 3) / 4, g1 = o1 / 4;
    for (int o = o0; o < o1 && o < g0 * 4; o++) moe_bf16p_gemv_row(y + o, x, W, in, o);   /* ragged start */
    if (g1 > g0) {
        int h = (g1 - g0 + 1) / 2;
        for (int i = 0; i < h; i++) two_groups(y, x, W, in, g0 + i, g0 + i + h < g1 ? g0 + i + h : -1);
    }
    for (int o = g1 * 4 > o0 ? g1 * 4 : o0; o < o1; o++) moe_bf16p_gemv_row(y + o, x, W, in, o);   /* ragged end */
}
