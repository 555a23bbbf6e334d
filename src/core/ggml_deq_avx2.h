/* ggml_deq_avx2.h - AVX2 dequantizers of one block of each ggml format (ggml_types.h) into f32, for
 * the kernels of ggml_tmpl.h (both the AVX2 and the AVX-512 build include this; AVX-512 adds nothing
 * to a byte-unpacking problem this small). Each computes exactly what the scalar converter does:
 * the same products in the same order, a multiply and then an add or subtract, never a fused
 * multiply-add (the tests compare the prefill path, which multiplies these values with the f32
 * kernel, bit for bit against the f32 kernel on the scalar converter's output). */
#ifndef MOE_CORE_GGML_DEQ_AVX2_H
#define MOE_CORE_GGML_DEQ_AVX2_H
#include "core/ggml_types.h"
#include <immintrin.h>
#include <stdint.h>

#define GGV static inline __attribute__((always_inline))

GGV float gg_h2f(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }
GGV uint32_t gg_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
/* 8 bytes at p widened to 8 int32 lanes */
GGV __m256i gg_u8x8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
GGV __m256i gg_u8x8_reg(__m128i v) { return _mm256_cvtepu8_epi32(v); }
/* out[0..8) = (float)q * d, or d * q + m and the like: spelled out per format below */
GGV void gg_store_mul(float *out, __m256i q, __m256 d) { _mm256_storeu_ps(out, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q))); }

/* 32 nibbles of a q4_0-style block as four vectors of 8 int32: elements 0-7, 8-15 (low nibbles),
 * 16-23, 24-31 (high nibbles). */
GGV void gg_nibbles32(const uint8_t *qs, __m256i q[4]) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    q[0] = gg_u8x8_reg(lo);
    q[1] = gg_u8x8_reg(_mm_srli_si128(lo, 8));
    q[2] = gg_u8x8_reg(hi);
    q[3] = gg_u8x8_reg(_mm_srli_si128(hi, 8));
}
/* the high bits of a q5 block: bit j of qh for elements 8k..8k+7, as 0 or 16 */
GGV __m256i gg_high5(uint32_t qh, int k) {
    __m256i sh = _mm256_setr_epi32(8 * k, 8 * k + 1, 8 * k + 2, 8 * k + 3, 8 * k + 4, 8 * k + 5, 8 * k + 6, 8 * k + 7);
    __m256i b = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)qh), sh), _mm256_set1_epi32(1));
    return _mm256_slli_epi32(b, 4);
}

GGV void deq_ggml_q8_0(const uint8_t *b, float *out) {
    __m256 d = _mm256_set1_ps(gg_h2f(b));
    for (int k = 0; k < 4; k++) {
        __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * k))));
        _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(q, d));
    }
}

GGV void deq_ggml_q4_0(const uint8_t *b, float *out) {
    __m256 d = _mm256_set1_ps(gg_h2f(b));
    __m256i q[4], eight = _mm256_set1_epi32(8);
    gg_nibbles32(b + 2, q);
    for (int k = 0; k < 4; k++) gg_store_mul(out + 8 * k, _mm256_sub_epi32(q[k], eight), d);
}

GGV void deq_q4_1(const uint8_t *b, float *out) {
    __m256 d = _mm256_set1_ps(gg_h2f(b)), m = _mm256_set1_ps(gg_h2f(b + 2));
    __m256i q[4];
    gg_nibbles32(b + 4, q);
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(out + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[k])), m));
}

GGV void deq_q5_0(const uint8_t *b, float *out) {
    __m256 d = _mm256_set1_ps(gg_h2f(b));
    uint32_t qh = gg_u32(b + 2);
    __m256i q[4], sixteen = _mm256_set1_epi32(16);
    gg_nibbles32(b + 6, q);
    for (int k = 0; k < 4; k++) gg_store_mul(out + 8 * k, _mm256_sub_epi32(_mm256_or_si256(q[k], gg_high5(qh, k)), sixteen), d);
}

GGV void deq_q5_1(const uint8_t *b, float *out) {
    __m256 d = _mm256_set1_ps(gg_h2f(b)), m = _mm256_set1_ps(gg_h2f(b + 2));
    uint32_t qh = gg_u32(b + 4);
    __m256i q[4];
    gg_nibbles32(b + 8, q);
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(out + 8 * k,
                         _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_or_si256(q[k], gg_high5(qh, k)))), m));
}

/* q4_k / q5_k: sub-block s of 32 from nibble bytes q (low or high nibbles), optional high bits */
GGV void gg_k_sub(float *out, const uint8_t *q, int high_nibble, const uint8_t *qh, int s, float dl, float ml) {
    __m256 vdl = _mm256_set1_ps(dl), vml = _mm256_set1_ps(ml);
    const __m256i m4 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    for (int k = 0; k < 4; k++) {
        __m256i v = gg_u8x8(q + 8 * k);
        v = high_nibble ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, m4);
        if (qh) v = _mm256_or_si256(v, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(gg_u8x8(qh + 8 * k), s), one), 4));
        _mm256_storeu_ps(out + 8 * k, _mm256_sub_ps(_mm256_mul_ps(vdl, _mm256_cvtepi32_ps(v)), vml));
    }
}

GGV void deq_q4_k(const uint8_t *b, float *out) {
    float d = gg_h2f(b), dmin = gg_h2f(b + 2);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        moe_k4_scale_min(b + 4, s, &sc, &m);
        gg_k_sub(out + 32 * s, b + 16 + 32 * (s / 2), s & 1, NULL, 0, d * (float)sc, dmin * (float)m);
    }
}

GGV void deq_q5_k(const uint8_t *b, float *out) {
    float d = gg_h2f(b), dmin = gg_h2f(b + 2);
    for (int s = 0; s < 8; s++) {
        int sc, m;
        moe_k4_scale_min(b + 4, s, &sc, &m);
        gg_k_sub(out + 32 * s, b + 48 + 32 * (s / 2), s & 1, b + 16, s, d * (float)sc, dmin * (float)m);
    }
}

GGV void deq_q6_k(const uint8_t *b, float *out) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = gg_h2f(b + 208);
    const __m256i m4 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)          /* r / 32 */
            for (int l0 = 0; l0 < 32; l0 += 8) {
                int r = 32 * k + l0, e = 128 * h + r;
                __m256i lo = gg_u8x8(ql + 64 * h + r % 64);
                lo = r < 64 ? _mm256_and_si256(lo, m4) : _mm256_srli_epi32(lo, 4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi32(gg_u8x8(qh + 32 * h + l0), 2 * k), m3);
                __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), off);
                gg_store_mul(out + e, q, _mm256_set1_ps(d * (float)sc[e / 16]));
            }
}

GGV void deq_mxfp4(const uint8_t *b, float *out) {
    const __m128i tab = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12), m4 = _mm_set1_epi8(15);
    __m256 d = _mm256_set1_ps(moe_e8m0_half(b[0]));
    __m128i v = _mm_loadu_si128((const __m128i *)(b + 1));
    __m128i lo = _mm_shuffle_epi8(tab, _mm_and_si128(v, m4)), hi = _mm_shuffle_epi8(tab, _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) gg_store_mul(out + 8 * k, _mm256_cvtepi8_epi32(parts[k]), d);
}
/* e4m3 bytes to f32: bits (q & 0x7f) << 20 with the sign moved to bit 31 give 2^-120 times the value
 * (subnormal codes included), so one exact multiply by 2^120 finishes; code 0x7f is NaN */
GGV __m256 gg_e4m3x8(__m256i q) {
    __m256i em = _mm256_and_si256(q, _mm256_set1_epi32(0x7f));
    __m256i bits = _mm256_or_si256(_mm256_slli_epi32(em, 20), _mm256_slli_epi32(_mm256_and_si256(q, _mm256_set1_epi32(0x80)), 24));
    __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(bits), _mm256_set1_ps(0x1p120f));
    __m256 nan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(em, _mm256_set1_epi32(0x7f)));
    return _mm256_blendv_ps(v, _mm256_set1_ps(__builtin_nanf("")), nan);
}

GGV void deq_f8_e4m3_b128(const uint8_t *b, float *out) {
    float s;
    __builtin_memcpy(&s, b, 4);
    __m256 vs = _mm256_set1_ps(s);
    for (int k = 0; k < 16; k++) _mm256_storeu_ps(out + 8 * k, _mm256_mul_ps(gg_e4m3x8(gg_u8x8(b + 4 + 8 * k)), vs));
}
#endif
