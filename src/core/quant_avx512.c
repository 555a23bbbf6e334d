/* quant_avx512.c - AVX-512 VNNI products of quantized weights with int8 activations.
 * vpdpbusd multiplies unsigned by signed bytes and accumulates groups of four straight into int32, so
 * a block needs one instruction instead of AVX2's three. Two blocks (64 quants, contiguous because a
 * row stores its quants apart from its scales) fill one 512-bit register; lanes 0-7 belong to the
 * first block and 8-15 to the second, so the scale vector holds each block's scale in its half.
 * q8_0 moves w's sign onto x (|w| * sign(w) x = w x); q4's nibbles are unpacked so that each 128-bit
 * lane holds 16 consecutive weights of a block. An odd last block uses the 256-bit form.
 * Used only when CPUID and XCR0 allow AVX-512 and the CPU has VNNI (cpu.c). */
#include "core/quant.h"
#include <immintrin.h>

static inline float f16_at(const unsigned char *p, int b) { return _cvtsh_ss((unsigned short)(p[2 * b] | p[2 * b + 1] << 8)); }

static inline __m512 two_scales(float a, float b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(a)), _mm256_set1_ps(b), 1);
}

static inline __m512i dot2_q8(const int8_t *w, const int8_t *x) {
    __m512i wv = _mm512_loadu_si512(w), xv = _mm512_loadu_si512(x);
    __mmask64 neg = _mm512_movepi8_mask(wv);
    __m512i sx = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), sx);
}

static inline __m256i dot1_q8(const int8_t *w, const int8_t *x) {
    __m256i wv = _mm256_loadu_si256((const __m256i *)w), xv = _mm256_loadu_si256((const __m256i *)x);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
}

static inline __m512i dot2_q4(const unsigned char *qs, const int8_t *x) {
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i b = _mm256_loadu_si256((const __m256i *)qs);          /* block 0 bytes | block 1 bytes */
    __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
    __m256i t0 = _mm256_permute2x128_si256(lo, hi, 0x20);          /* block 0: elements 0-15 | 16-31 */
    __m256i t1 = _mm256_permute2x128_si256(lo, hi, 0x31);          /* block 1 */
    __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(t0), t1, 1);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, _mm512_loadu_si512(x));
}

static inline __m256i dot1_q4(const unsigned char *qs, const int8_t *x) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m4), _mm_and_si128(b, m4));
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, _mm256_loadu_si256((const __m256i *)x));
}

void moe_qgemm_q8_0_avx512(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, int o0,
                             int o1) {
    const int nb = x->nb;
    for (int t = 0; t < n; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * 32;
        const float *xd = x->d + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const unsigned char *row = (const unsigned char *)w + (size_t)o * row_bytes;
            const int8_t *wq = (const int8_t *)(row + 2 * nb);
            __m512 acc = _mm512_setzero_ps();
            int b = 0;
            for (; b + 2 <= nb; b += 2) {
                __m512 p = _mm512_cvtepi32_ps(dot2_q8(wq + b * 32, xq + b * 32));
                acc = _mm512_fmadd_ps(p, two_scales(f16_at(row, b) * xd[b], f16_at(row, b + 1) * xd[b + 1]), acc);
            }
            float s = _mm512_reduce_add_ps(acc);
            if (b < nb) {
                __m256 p = _mm256_cvtepi32_ps(dot1_q8(wq + b * 32, xq + b * 32));
                __m256 v = _mm256_mul_ps(p, _mm256_set1_ps(f16_at(row, b) * xd[b]));
                __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                s += _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
            }
            y[t * ldy + o] = s;
        }
    }
}

void moe_qgemm_q4_avx512(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, int o0,
                           int o1) {
    const int nb = x->nb;
    for (int t = 0; t < n; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * 32;
        const float *xd = x->d + (size_t)t * nb, *xs = x->s + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const unsigned char *row = (const unsigned char *)w + (size_t)o * row_bytes;
            const unsigned char *mins = row + 2 * nb, *qs = row + 4 * nb;
            __m512 acc = _mm512_setzero_ps();
            float mn = 0;
            int b = 0;
            for (; b + 2 <= nb; b += 2) {
                __m512 p = _mm512_cvtepi32_ps(dot2_q4(qs + b * 16, xq + b * 32));
                acc = _mm512_fmadd_ps(p, two_scales(f16_at(row, b) * xd[b], f16_at(row, b + 1) * xd[b + 1]), acc);
                mn += f16_at(mins, b) * xs[b] + f16_at(mins, b + 1) * xs[b + 1];
            }
            float s = _mm512_reduce_add_ps(acc);
            if (b < nb) {
                __m256 p = _mm256_cvtepi32_ps(dot1_q4(qs + b * 16, xq + b * 32));
                __m256 v = _mm256_mul_ps(p, _mm256_set1_ps(f16_at(row, b) * xd[b]));
                __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                s += _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
                mn += f16_at(mins, b) * xs[b];
            }
            y[t * ldy + o] = s + mn;
        }
    }
}

