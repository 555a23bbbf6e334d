/* matmul_avx2.c - AVX2+FMA+F16C kernels. Weights are widened to f32 in registers; each output column
 * is a dot product over `in`, four rows of W at a time so that one load of x feeds four FMAs. */
#include "core/matmul.h"
#include <immintrin.h>
#include <stdint.h>

static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline __m256 load_f32(const void *p, int i) { return _mm256_loadu_ps((const float *)p + i); }
static inline __m256 load_bf16(const void *p, int i) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline __m256 load_f16(const void *p, int i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}
static inline float tail_f32(const void *p, int i) { return ((const float *)p)[i]; }
static inline float tail_bf16(const void *p, int i) { return moe_bf16_to_f32(((const uint16_t *)p)[i]); }
static inline float tail_f16(const void *p, int i) { return moe_f16_to_f32(((const uint16_t *)p)[i]); }

#define DEFINE_GEMM(NAME, T, ESZ, LOAD, TAIL)                                                          \
static void NAME(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, \
                 int o1) {                                                                           \
    const char *W = w;                                                                               \
    int in8 = in & ~7;                                                                               \
    for (int t = 0; t < n; t++) {                                                                    \
        const float *xr = x + t * ldx;                                                               \
        int o = o0;                                                                                  \
        for (; o + 4 <= o1; o += 4) {                                                                \
            const void *w0 = W + (size_t)o * in * ESZ, *w1 = W + (size_t)(o + 1) * in * ESZ;         \
            const void *w2 = W + (size_t)(o + 2) * in * ESZ, *w3 = W + (size_t)(o + 3) * in * ESZ;   \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                               \
            for (int i = 0; i < in8; i += 8) {                                                       \
                __m256 xv = _mm256_loadu_ps(xr + i);                                                 \
                a0 = _mm256_fmadd_ps(xv, LOAD(w0, i), a0);                                           \
                a1 = _mm256_fmadd_ps(xv, LOAD(w1, i), a1);                                           \
                a2 = _mm256_fmadd_ps(xv, LOAD(w2, i), a2);                                           \
                a3 = _mm256_fmadd_ps(xv, LOAD(w3, i), a3);                                           \
            }                                                                                        \
            float s0 = hsum256(a0), s1 = hsum256(a1), s2 = hsum256(a2), s3 = hsum256(a3);            \
            for (int i = in8; i < in; i++) {                                                         \
                s0 += xr[i] * TAIL(w0, i); s1 += xr[i] * TAIL(w1, i);                                \
                s2 += xr[i] * TAIL(w2, i); s3 += xr[i] * TAIL(w3, i);                                \
            }                                                                                        \
            y[t * ldy + o] = s0; y[t * ldy + o + 1] = s1; y[t * ldy + o + 2] = s2; y[t * ldy + o + 3] = s3; \
        }                                                                                            \
        for (; o < o1; o++) {                                                                        \
            const void *w0 = W + (size_t)o * in * ESZ;                                               \
            __m256 a0 = _mm256_setzero_ps();                                                         \
            for (int i = 0; i < in8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xr + i), LOAD(w0, i), a0); \
            float s0 = hsum256(a0);                                                                  \
            for (int i = in8; i < in; i++) s0 += xr[i] * TAIL(w0, i);                                \
            y[t * ldy + o] = s0;                                                                     \
        }                                                                                            \
    }                                                                                                \
}

DEFINE_GEMM(gemm_f32_avx2, float, 4, load_f32, tail_f32)
DEFINE_GEMM(gemm_bf16_avx2, uint16_t, 2, load_bf16, tail_bf16)
DEFINE_GEMM(gemm_f16_avx2, uint16_t, 2, load_f16, tail_f16)

const moe_gemm_kernels moe_gemm_avx2 = {gemm_f32_avx2, gemm_bf16_avx2, gemm_f16_avx2};
