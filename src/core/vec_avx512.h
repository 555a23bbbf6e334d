/* vec_avx512.h - the vector vocabulary of vec_avx2.h for 16-lane zmm registers (AVX-512 F, BW, VL,
 * DQ). Same names and meanings, so matmul_tmpl.h and ops_tmpl.h compile unchanged for either width;
 * only files compiled with the AVX-512 flags may include it, and only CPUs for which
 * moe_simd_detect() returns MOE_SIMD_AVX512 may call what they define. Masked loads replace the
 * partial-load copies of the AVX2 version (no memory past the k-th element is touched). */
#ifndef MOE_CORE_VEC_AVX512_H
#define MOE_CORE_VEC_AVX512_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VW 16
#define VEC_ISA avx512
#define VINLINE static inline __attribute__((always_inline))
typedef __m512 vf;

VINLINE vf vzero(void) { return _mm512_setzero_ps(); }
VINLINE vf vset1(float a) { return _mm512_set1_ps(a); }
VINLINE vf vload(const float *p) { return _mm512_loadu_ps(p); }
VINLINE void vstore(float *p, vf v) { _mm512_storeu_ps(p, v); }
VINLINE vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
VINLINE vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
VINLINE vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
VINLINE vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
VINLINE vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
VINLINE vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
VINLINE vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }

VINLINE __mmask16 lane_mask(int k) { return (__mmask16)((1u << k) - 1u); }
VINLINE vf vload_n(const float *p, int k) { return _mm512_maskz_loadu_ps(lane_mask(k), p); }
VINLINE void vstore_n(float *p, vf v, int k) { _mm512_mask_storeu_ps(p, lane_mask(k), v); }

VINLINE vf vw_f32(const void *w, size_t i) { return _mm512_loadu_ps((const float *)w + i); }
VINLINE vf vw_bf16(const void *w, size_t i) {
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
VINLINE vf vw_f16(const void *w, size_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
}
VINLINE void vw_bf16_pair(const void *w, size_t i, vf *even, vf *odd) {
    __m512i v = _mm512_loadu_si512((const void *)((const uint16_t *)w + i));
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}
VINLINE vf vw_f32_n(const void *w, size_t i, int k) { return vload_n((const float *)w + i, k); }
VINLINE vf vw_bf16_n(const void *w, size_t i, int k) {
    __m256i h = _mm256_maskz_loadu_epi16(lane_mask(k), (const uint16_t *)w + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
VINLINE vf vw_f16_n(const void *w, size_t i, int k) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lane_mask(k), (const uint16_t *)w + i));
}

VINLINE __m256 half_sum(vf v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)); }
VINLINE float vhsum(vf v) {
    __m256 h = half_sum(v);
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
VINLINE float vhmax(vf v) {
    __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 lo = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
VINLINE __m128 vhsum4(vf a, vf b, vf c, vf d) {
    __m256 ab = _mm256_hadd_ps(half_sum(a), half_sum(b)), cd = _mm256_hadd_ps(half_sum(c), half_sum(d));
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

typedef __m512d vd;
VINLINE vd vd_zero(void) { return _mm512_setzero_pd(); }
VINLINE vd vd_lo(vf v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
VINLINE vd vd_hi(vf v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
VINLINE vd vd_fma(vd a, vd b, vd c) { return _mm512_fmadd_pd(a, b, c); }
VINLINE vd vd_add(vd a, vd b) { return _mm512_add_pd(a, b); }
VINLINE double vd_hsum(vd v) {
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

VINLINE vf vround(vf v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
VINLINE vf vpow2i(vf n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
VINLINE vf vselect_lt(vf a, vf b, vf x, vf y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x); }
/* Bit j set where lane j is not in [lo, hi] (NaN lanes included). */
VINLINE unsigned vmask_outside(vf v, float lo, float hi) {
    return (unsigned)(_mm512_cmp_ps_mask(v, _mm512_set1_ps(lo), _CMP_NGE_UQ) |
                      _mm512_cmp_ps_mask(v, _mm512_set1_ps(hi), _CMP_NLE_UQ));
}
/* Bit j set where lane j is NaN. */
VINLINE unsigned vmask_nan(vf v) { return (unsigned)_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
VINLINE void vprefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
#endif
