/* tvec_avx2.c - AVX2 exp, SwiGLU forward and backward (see tvec.h). exp(x) = 2^k e^r with
 * k = round(x / ln 2), r = x - k ln 2 (ln 2 split in two parts for accuracy), e^r by a degree-5
 * polynomial; inputs are clamped to [-88.38, 88.38] so 2^k stays a normal float (exp of less than
 * -87.3 comes out as a tiny normal instead of a subnormal or 0, harmless in a softmax or a sigmoid). */
#include "train/tvec.h"
#include <immintrin.h>
#include <math.h>

static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3762626647949f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void moe_vexp_shift_avx2(float *y, const float *x, float shift, size_t n) {
    size_t i = 0;
    __m256 s = _mm256_set1_ps(shift);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
    for (; i < n; i++) y[i] = expf(x[i] - shift);
}

static inline __m256 sigmoid8(__m256 g) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

void moe_swiglu_act_fwd_avx2(float *a, const float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_mul_ps(gv, sigmoid8(gv)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void moe_swiglu_act_bwd_avx2(float *dg, float *du, const float *da, const float *g, const float *u, size_t n) {
    size_t i = 0;
    __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i), d = _mm256_loadu_ps(da + i);
        __m256 s = sigmoid8(x);
        __m256 xs = _mm256_mul_ps(x, s);
        _mm256_storeu_ps(du + i, _mm256_mul_ps(d, xs));
        /* dg = da u s (1 + x (1 - s)) */
        __m256 t = _mm256_fmadd_ps(x, _mm256_sub_ps(one, s), one);
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, uv), s), t));
    }
    for (; i < n; i++) {
        float x = g[i], ui = u[i], gi = da[i];
        float s = 1.0f / (1.0f + expf(-x));
        du[i] = gi * x * s;
        dg[i] = gi * ui * s * (1.0f + x * (1.0f - s));
    }
}
