/* vec_emu16.h - the 16-lane vector vocabulary of vec_avx512.h emulated with pairs of AVX2 registers,
 * for tests only. Instantiating matmul_tmpl.h / ops_tmpl.h over it runs the AVX-512 kernels' logic
 * (16-lane tails and masks, 32-element bf16 pairs, the AVX-512 tile shapes of matmul_shapes.h) on
 * any AVX2 machine, so that the part of the AVX-512 build that is not plain intrinsics wrapping is
 * tested even where AVX-512 cannot run. Lane j of an emulated vector is lane j of lo for j < 8 and
 * lane j-8 of hi otherwise, the same element order as a zmm register.
 * Include emu16_kernels.h, which compiles it for AVX2 inside a target pragma. */
#ifndef MOE_TEST_VEC_EMU16_H
#define MOE_TEST_VEC_EMU16_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define VW 16
#define VEC_ISA emu16
#define VINLINE static inline __attribute__((always_inline))
typedef struct { __m256 lo, hi; } vf;

VINLINE vf vmk(__m256 lo, __m256 hi) { vf v = {lo, hi}; return v; }
VINLINE vf vzero(void) { return vmk(_mm256_setzero_ps(), _mm256_setzero_ps()); }
VINLINE vf vset1(float a) { return vmk(_mm256_set1_ps(a), _mm256_set1_ps(a)); }
VINLINE vf vload(const float *p) { return vmk(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)); }
VINLINE void vstore(float *p, vf v) { _mm256_storeu_ps(p, v.lo); _mm256_storeu_ps(p + 8, v.hi); }
#define EMU_BIN(name, op) VINLINE vf name(vf a, vf b) { return vmk(op(a.lo, b.lo), op(a.hi, b.hi)); }
EMU_BIN(vadd, _mm256_add_ps)
EMU_BIN(vsub, _mm256_sub_ps)
EMU_BIN(vmul, _mm256_mul_ps)
EMU_BIN(vdiv, _mm256_div_ps)
EMU_BIN(vmax, _mm256_max_ps)
EMU_BIN(vmin, _mm256_min_ps)
VINLINE vf vfma(vf a, vf b, vf c) { return vmk(_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)); }

VINLINE __m256i emu_mask8(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
VINLINE vf vload_n(const float *p, int k) {
    /* like a masked zmm load: lanes >= k are zero and their memory is not read */
    return vmk(_mm256_maskload_ps(p, emu_mask8(k)), k > 8 ? _mm256_maskload_ps(p + 8, emu_mask8(k - 8)) : _mm256_setzero_ps());
}
VINLINE void vstore_n(float *p, vf v, int k) {
    _mm256_maskstore_ps(p, emu_mask8(k), v.lo);
    if (k > 8) _mm256_maskstore_ps(p + 8, emu_mask8(k - 8), v.hi);
}

VINLINE __m256 emu_bf16_8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
VINLINE __m256 emu_f16_8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
VINLINE vf vw_f32(const void *w, size_t i) { return vload((const float *)w + i); }
VINLINE vf vw_bf16(const void *w, size_t i) {
    const uint16_t *p = (const uint16_t *)w + i;
    return vmk(emu_bf16_8(p), emu_bf16_8(p + 8));
}
VINLINE vf vw_f16(const void *w, size_t i) {
    const uint16_t *p = (const uint16_t *)w + i;
    return vmk(emu_f16_8(p), emu_f16_8(p + 8));
}
VINLINE void vw_bf16_pair(const void *w, size_t i, vf *even, vf *odd) {
    const uint16_t *p = (const uint16_t *)w + i;
    __m256i a = _mm256_loadu_si256((const __m256i *)p), b = _mm256_loadu_si256((const __m256i *)(p + 16));
    __m256i m = _mm256_set1_epi32((int)0xffff0000u);
    *even = vmk(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)), _mm256_castsi256_ps(_mm256_slli_epi32(b, 16)));
    *odd = vmk(_mm256_castsi256_ps(_mm256_and_si256(a, m)), _mm256_castsi256_ps(_mm256_and_si256(b, m)));
}
VINLINE vf vw_f32_n(const void *w, size_t i, int k) { return vload_n((const float *)w + i, k); }
VINLINE vf vw_bf16_n(const void *w, size_t i, int k) {
    uint16_t tmp[16] = {0};
    memcpy(tmp, (const uint16_t *)w + i, (size_t)k * 2);
    return vw_bf16(tmp, 0);
}
VINLINE vf vw_f16_n(const void *w, size_t i, int k) {
    uint16_t tmp[16] = {0};
    memcpy(tmp, (const uint16_t *)w + i, (size_t)k * 2);
    return vw_f16(tmp, 0);
}

VINLINE float emu_hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
VINLINE float vhsum(vf v) { return emu_hsum8(_mm256_add_ps(v.lo, v.hi)); }
VINLINE float vhmax(vf v) {
    __m256 m = _mm256_max_ps(v.lo, v.hi);
    __m128 lo = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
VINLINE __m128 vhsum4(vf a, vf b, vf c, vf d) {
    __m256 ab = _mm256_hadd_ps(_mm256_add_ps(a.lo, a.hi), _mm256_add_ps(b.lo, b.hi));
    __m256 cd = _mm256_hadd_ps(_mm256_add_ps(c.lo, c.hi), _mm256_add_ps(d.lo, d.hi));
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

typedef struct { __m256d a, b; } vd;   /* lanes 0-3 and 4-7 of an 8-lane double vector */
VINLINE vd vdmk(__m256d a, __m256d b) { vd v = {a, b}; return v; }
VINLINE vd vd_zero(void) { return vdmk(_mm256_setzero_pd(), _mm256_setzero_pd()); }
VINLINE vd vd_lo(vf v) { return vdmk(_mm256_cvtps_pd(_mm256_castps256_ps128(v.lo)), _mm256_cvtps_pd(_mm256_extractf128_ps(v.lo, 1))); }
VINLINE vd vd_hi(vf v) { return vdmk(_mm256_cvtps_pd(_mm256_castps256_ps128(v.hi)), _mm256_cvtps_pd(_mm256_extractf128_ps(v.hi, 1))); }
VINLINE vd vd_fma(vd x, vd y, vd z) { return vdmk(_mm256_fmadd_pd(x.a, y.a, z.a), _mm256_fmadd_pd(x.b, y.b, z.b)); }
VINLINE vd vd_add(vd x, vd y) { return vdmk(_mm256_add_pd(x.a, y.a), _mm256_add_pd(x.b, y.b)); }
VINLINE double vd_hsum(vd v) {
    __m256d s = _mm256_add_pd(v.a, v.b);
    __m128d lo = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(lo, _mm_unpackhi_pd(lo, lo)));
}

VINLINE vf vround(vf v) {
    return vmk(_mm256_round_ps(v.lo, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
               _mm256_round_ps(v.hi, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
VINLINE __m256 emu_pow2i8(__m256 n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
VINLINE vf vpow2i(vf n) { return vmk(emu_pow2i8(n.lo), emu_pow2i8(n.hi)); }
VINLINE vf vselect_lt(vf a, vf b, vf x, vf y) {
    return vmk(_mm256_blendv_ps(y.lo, x.lo, _mm256_cmp_ps(a.lo, b.lo, _CMP_LT_OQ)),
               _mm256_blendv_ps(y.hi, x.hi, _mm256_cmp_ps(a.hi, b.hi, _CMP_LT_OQ)));
}
VINLINE unsigned emu_outside8(__m256 v, float lo, float hi) {
    __m256 out = _mm256_or_ps(_mm256_cmp_ps(v, _mm256_set1_ps(lo), _CMP_NGE_UQ),
                              _mm256_cmp_ps(v, _mm256_set1_ps(hi), _CMP_NLE_UQ));
    return (unsigned)_mm256_movemask_ps(out);
}
VINLINE unsigned vmask_outside(vf v, float lo, float hi) { return emu_outside8(v.lo, lo, hi) | emu_outside8(v.hi, lo, hi) << 8; }
VINLINE unsigned vmask_nan(vf v) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v.lo, v.lo, _CMP_UNORD_Q)) |
           (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v.hi, v.hi, _CMP_UNORD_Q)) << 8;
}
VINLINE void vprefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }
#endif
