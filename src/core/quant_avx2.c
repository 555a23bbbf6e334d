/* quant_avx2.c - AVX2 products of quantized weights with int8-quantized activations.
 * One 32-weight block is one 256-bit register. vpmaddubsw multiplies unsigned by signed bytes and adds
 * pairs into int16: for q4 the nibbles are already unsigned; for q8_0 the sign of w moves onto x
 * (|w| * sign(w) x = w x), as in llama.cpp. Pair sums stay below 2*128*127 < 2^15, so nothing
 * saturates and the integer sum of a block is exact; vpmaddwd with ones widens it to int32. The f16
 * scales are widened eight at a time with F16C and multiplied by the activation scales up front. */
#include "core/quant.h"
#include <immintrin.h>

static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* sc[b] = f16 scale b of the row * xd[b], for b in [b0, b0+8) (or fewer at the end) */
static inline void scales8(float *sc, const unsigned char *f16s, const float *xd, int b0, int nb) {
    if (b0 + 8 <= nb) {
        __m256 w = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(f16s + 2 * b0)));
        _mm256_storeu_ps(sc, _mm256_mul_ps(w, _mm256_loadu_ps(xd + b0)));
    } else {
        for (int b = b0; b < nb; b++)
            sc[b - b0] = _cvtsh_ss((unsigned short)(f16s[2 * b] | f16s[2 * b + 1] << 8)) * xd[b];
    }
}

static inline __m256i dot_q8(const int8_t *w, const int8_t *x, __m256i ones) {
    __m256i wv = _mm256_loadu_si256((const __m256i *)w), xv = _mm256_loadu_si256((const __m256i *)x);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
    return _mm256_madd_epi16(p16, ones);
}

static inline __m256i dot_q4(const unsigned char *qs, const int8_t *x, __m256i ones) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i wv = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m4), _mm_and_si128(b, m4));
    __m256i p16 = _mm256_maddubs_epi16(wv, _mm256_loadu_si256((const __m256i *)x));
    return _mm256_madd_epi16(p16, ones);
}

void moe_qgemm_q8_0_avx2(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, int o0,
                           int o1) {
    const int nb = x->nb;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < n; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * 32;
        const float *xd = x->d + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const unsigned char *row = (const unsigned char *)w + (size_t)o * row_bytes;
            const int8_t *wq = (const int8_t *)(row + 2 * nb);
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            float sc[8];
            for (int b0 = 0; b0 < nb; b0 += 8) {
                scales8(sc, row, xd, b0, nb);
                int be = b0 + 8 < nb ? b0 + 8 : nb, b = b0;
                for (; b + 2 <= be; b += 2) {
                    __m256 p0 = _mm256_cvtepi32_ps(dot_q8(wq + b * 32, xq + b * 32, ones));
                    __m256 p1 = _mm256_cvtepi32_ps(dot_q8(wq + b * 32 + 32, xq + b * 32 + 32, ones));
                    acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(sc[b - b0]), acc0);
                    acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(sc[b - b0 + 1]), acc1);
                }
                if (b < be)
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_q8(wq + b * 32, xq + b * 32, ones)),
                                           _mm256_set1_ps(sc[b - b0]), acc0);
            }
            y[t * ldy + o] = hsum256(_mm256_add_ps(acc0, acc1));
        }
    }
}

void moe_qgemm_q4_avx2(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, int o0,
                         int o1) {
    const int nb = x->nb;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < n; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * 32;
        const float *xd = x->d + (size_t)t * nb, *xs = x->s + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const unsigned char *row = (const unsigned char *)w + (size_t)o * row_bytes;
            const unsigned char *mins = row + 2 * nb, *qs = row + 4 * nb;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
            float sc[8], mn = 0;
            for (int b0 = 0; b0 < nb; b0 += 8) {
                scales8(sc, row, xd, b0, nb);
                int be = b0 + 8 < nb ? b0 + 8 : nb, b = b0;
                if (be - b0 == 8) {
                    __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(mins + 2 * b0)));
                    accm = _mm256_fmadd_ps(m, _mm256_loadu_ps(xs + b0), accm);
                } else {
                    for (int k = b0; k < be; k++) mn += _cvtsh_ss((unsigned short)(mins[2 * k] | mins[2 * k + 1] << 8)) * xs[k];
                }
                for (; b + 2 <= be; b += 2) {
                    __m256 p0 = _mm256_cvtepi32_ps(dot_q4(qs + b * 16, xq + b * 32, ones));
                    __m256 p1 = _mm256_cvtepi32_ps(dot_q4(qs + b * 16 + 16, xq + b * 32 + 32, ones));
                    acc0 = _mm256_fmadd_ps(p0, _mm256_set1_ps(sc[b - b0]), acc0);
                    acc1 = _mm256_fmadd_ps(p1, _mm256_set1_ps(sc[b - b0 + 1]), acc1);
                }
                if (b < be)
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_q4(qs + b * 16, xq + b * 32, ones)),
                                           _mm256_set1_ps(sc[b - b0]), acc0);
            }
            y[t * ldy + o] = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), accm)) + mn;
        }
    }
}

