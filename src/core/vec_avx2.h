/* vec_avx2.h - the small vector vocabulary (8 x f32 in a ymm register) in which the shared kernel
 * templates (matmul_tmpl.h, ops_tmpl.h) are written. Only files compiled with -mavx2 -mfma -mf16c may
 * include it. vec_avx512.h defines the same names for 16-lane zmm registers, so that the logic of the
 * AVX-512 kernels, which cannot run on every development machine, is exactly the logic that the
 * AVX2 build exercises in the tests; only these few primitives differ.
 *
 * Partial loads (the _n forms) read k < VW elements and zero the other lanes without touching memory
 * past the k-th element: f32 uses vmaskmov, 16-bit elements go through a small zeroed copy because
 * AVX2 has no 16-bit masked load. */
#ifndef MOE_CORE_VEC_AVX2_H
#define MOE_CORE_VEC_AVX2_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VW 8
#define VEC_ISA avx2
#define VINLINE static inline __attribute__((always_inline))
typedef __m256 vf;

VINLINE vf vzero(void) { return _mm256_setzero_ps(); }
VINLINE vf vset1(float a) { return _mm256_set1_ps(a); }
VINLINE vf vload(const float *p) { return _mm256_loadu_ps(p); }
VINLINE void vstore(float *p, vf v) { _mm256_storeu_ps(p, v); }
VINLINE vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
VINLINE vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
VINLINE vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
VINLINE vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
VINLINE vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
VINLINE vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
VINLINE vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }

VINLINE __m256i lane_mask(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
VINLINE vf vload_n(const float *p, int k) { return _mm256_maskload_ps(p, lane_mask(k)); }
VINLINE void vstore_n(float *p, vf v, int k) { _mm256_maskstore_ps(p, lane_mask(k), v); }

/* Weights: VW elements starting at element i, widened to f32. */
VINLINE vf vw_f32(const void *w, size_t i) { return _mm256_loadu_ps((const float *)w + i); }
VINLINE vf vw_bf16(const void *w, size_t i) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
VINLINE vf vw_f16(const void *w, size_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
}
/* 2*VW bf16 weights at element i as two f32 vectors without a lane-crossing widen: even gets
 * elements i, i+2, i+4, ... and odd gets i+1, i+3, ... (one shift and one and; the x operand must be
 * permuted to match, see matmul_tmpl.h). */
VINLINE void vw_bf16_pair(const void *w, size_t i, vf *even, vf *odd) {
    __m256i v = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}
VINLINE vf vw_f32_n(const void *w, size_t i, int k) { return vload_n((const float *)w + i, k); }
VINLINE vf vw_bf16_n(const void *w, size_t i, int k) {
    uint16_t tmp[VW] = {0};
    memcpy(tmp, (const uint16_t *)w + i, (size_t)k * 2);
    return vw_bf16(tmp, 0);
}
VINLINE vf vw_f16_n(const void *w, size_t i, int k) {
    uint16_t tmp[VW] = {0};
    memcpy(tmp, (const uint16_t *)w + i, (size_t)k * 2);
    return vw_f16(tmp, 0);
}

VINLINE float vhsum(vf v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
VINLINE float vhmax(vf v) {
    __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
/* The four horizontal sums of a, b, c, d as one 4-lane vector (one transpose-and-add tree). */
VINLINE __m128 vhsum4(vf a, vf b, vf c, vf d) {
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d), abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* Doubles, for reductions that the scalar oracle does in double: VW/2 lanes per half. */
typedef __m256d vd;
VINLINE vd vd_zero(void) { return _mm256_setzero_pd(); }
VINLINE vd vd_lo(vf v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
VINLINE vd vd_hi(vf v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
VINLINE vd vd_fma(vd a, vd b, vd c) { return _mm256_fmadd_pd(a, b, c); }
VINLINE vd vd_add(vd a, vd b) { return _mm256_add_pd(a, b); }
VINLINE double vd_hsum(vd v) {
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

/* Integer helpers for exp(): 2^n built in the exponent field. */
VINLINE vf vround(vf v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
VINLINE vf vpow2i(vf n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
/* Lanes where a < b get x, others y. */
VINLINE vf vselect_lt(vf a, vf b, vf x, vf y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
/* Bit j set where lane j is not in [lo, hi] (NaN lanes included). */
VINLINE unsigned vmask_outside(vf v, float lo, float hi) {
    __m256 out = _mm256_or_ps(_mm256_cmp_ps(v, _mm256_set1_ps(lo), _CMP_NGE_UQ),
                              _mm256_cmp_ps(v, _mm256_set1_ps(hi), _CMP_NLE_UQ));
    return (unsigned)_mm256_movemask_ps(out);
}
/* Bit j set where lane j is NaN. */
VINLINE unsigned vmask_nan(vf v) { return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)); }
VINLINE void vprefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
#endif
