/* ggml_types.c - llama.cpp's block formats (see ggml_types.h): exact row converters, simple writers,
 * and the scalar product kernels that are the oracles of the SIMD ones (ggml_tmpl.h).
 * This file is compiled without FMA, so `a * b - c` is two roundings, as in numpy. */
#include "core/ggml_types.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include <math.h>
#include <string.h>

const int8_t moe_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static inline float h2f(const uint8_t *p) { return moe_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }
static inline void f2h(uint8_t *p, float v) {
    uint16_t h = moe_f32_to_f16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}
static inline uint32_t u32_at(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
/* element j of a 32-weight block of nibbles (low nibbles first, then high) */
static inline int nib(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }
static inline void put_nibs(uint8_t *qs, const int *q) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}
/* Round half away from zero (numpy's np_roundf in the gguf package) and clamp; NaN gives lo. */
static inline int round_clamp(float v, int lo, int hi) {
    float r = roundf(v);
    return r >= (float)hi ? hi : r >= (float)lo ? (int)r : lo;
}
/* trunc then clamp, as the gguf package's q4_0/q4_1/q5_x writers */
static inline int trunc_clamp(float v, int lo, int hi) {
    float r = truncf(v);
    return r >= (float)hi ? hi : r >= (float)lo ? (int)r : lo;
}

/* ---- converters ---------------------------------------------------------------------------- */

void moe_ggml_q8_0_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 34) {
        float d = h2f(b);
        for (int j = 0; j < 32; j++) out[c + j] = (float)(int8_t)b[2 + j] * d;
    }
}

void moe_ggml_q4_0_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 18) {
        float d = h2f(b);
        for (int j = 0; j < 32; j++) out[c + j] = d * (float)(nib(b + 2, j) - 8);
    }
}

void moe_q4_1_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 20) {
        float d = h2f(b), m = h2f(b + 2);
        for (int j = 0; j < 32; j++) out[c + j] = d * (float)nib(b + 4, j) + m;
    }
}

void moe_q5_0_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 22) {
        float d = h2f(b);
        uint32_t qh = u32_at(b + 2);
        for (int j = 0; j < 32; j++) out[c + j] = d * (float)((nib(b + 6, j) | (int)((qh >> j) & 1) << 4) - 16);
    }
}

void moe_q5_1_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 24) {
        float d = h2f(b), m = h2f(b + 2);
        uint32_t qh = u32_at(b + 4);
        for (int j = 0; j < 32; j++) out[c + j] = d * (float)(nib(b + 8, j) | (int)((qh >> j) & 1) << 4) + m;
    }
}

void moe_q4_k_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 256, b += 144) {
        float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *qs = b + 16;
        for (int s = 0; s < 8; s++) {
            int sc, m;
            moe_k4_scale_min(b + 4, s, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = qs + 32 * (s / 2);
            for (int l = 0; l < 32; l++) out[c + 32 * s + l] = dl * (float)(s & 1 ? q[l] >> 4 : q[l] & 15) - ml;
        }
    }
}

void moe_q5_k_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 256, b += 176) {
        float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *qh = b + 16, *qs = b + 48;
        for (int s = 0; s < 8; s++) {
            int sc, m;
            moe_k4_scale_min(b + 4, s, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = qs + 32 * (s / 2);
            for (int l = 0; l < 32; l++) {
                int v = (s & 1 ? q[l] >> 4 : q[l] & 15) | ((qh[l] >> s) & 1) << 4;
                out[c + 32 * s + l] = dl * (float)v - ml;
            }
        }
    }
}

void moe_q6_k_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 256, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = h2f(b + 208);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, r = e % 128;
            int lo = r < 64 ? ql[64 * h + r] & 15 : ql[64 * h + r - 64] >> 4;
            int hi = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            float dl = d * (float)sc[e / 16];
            out[c + e] = dl * (float)((lo | hi << 4) - 32);
        }
    }
}

void moe_mxfp4_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 17) {
        float d = moe_e8m0_half(b[0]);
        for (int j = 0; j < 32; j++) out[c + j] = d * (float)moe_mxfp4_values[nib(b + 1, j)];
    }
}

float moe_e4m3_to_f32(uint8_t q) {
    int e = (q >> 3) & 15, m = q & 7;
    if ((q & 0x7f) == 0x7f) return NAN;
    float v = e ? ldexpf(1.0f + (float)m / 8.0f, e - 7) : ldexpf((float)m, -9);
    return q & 0x80 ? -v : v;
}

uint8_t moe_f32_to_e4m3(float f) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a != a) return 0x7f;
    if (a >= 448.0f) return sign | 0x7e;
    /* the e4m3 value nearest to a, ties to the even code (codes are monotone in value) */
    int lo = 0, hi = 0x7e;
    while (lo < hi) {   /* largest code with value <= a */
        int mid = (lo + hi + 1) / 2;
        if (moe_e4m3_to_f32((uint8_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    int c = lo;
    if (c < 0x7e) {
        float v0 = moe_e4m3_to_f32((uint8_t)c), v1 = moe_e4m3_to_f32((uint8_t)(c + 1));
        if (a - v0 > v1 - a || (a - v0 == v1 - a && (c & 1))) c++;
    }
    return sign | (uint8_t)c;
}

void moe_f8_e4m3_b128_to_f32(const void *row, int64_t cols, float *out) {
    const uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 128, b += 132) {
        float s;
        memcpy(&s, b, 4);
        for (int j = 0; j < 128; j++) out[c + j] = moe_e4m3_to_f32(b[4 + j]) * s;
    }
}

void moe_f8b128_pack(const uint8_t *q, const float *s, int64_t rows, int64_t cols, uint8_t *out) {
    int64_t nb = cols / 128;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = out + ((size_t)r * nb + b) * 132;
            memcpy(o, s + (size_t)(r / 128) * nb + b, 4);
            memcpy(o + 4, q + (size_t)r * cols + b * 128, 128);
        }
}

void moe_mxfp4_pack_split(const uint8_t *blocks, const uint8_t *scales, int64_t n, uint8_t *out) {
    for (int64_t k = 0; k < n; k++) {
        const uint8_t *in = blocks + 16 * k;
        uint8_t *o = out + 17 * k, q[32];
        for (int i = 0; i < 16; i++) { q[2 * i] = in[i] & 15; q[2 * i + 1] = in[i] >> 4; }
        o[0] = scales[k];
        for (int j = 0; j < 16; j++) o[1 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    }
}

/* ---- writers ------------------------------------------------------------------------------- */

static float amax_of(const float *x, int n) {
    float a = 0;
    for (int j = 0; j < n; j++) a = fabsf(x[j]) > a ? fabsf(x[j]) : a;
    return a;
}
/* the value of largest magnitude, with its sign (first one on ties) */
static float signed_max(const float *x, int n) {
    float m = 0, a = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > a) { a = fabsf(x[j]); m = x[j]; }
    return m;
}

void moe_ggml_q8_0_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 34) {
        float d = amax_of(x + c, 32) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        f2h(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)round_clamp(x[c + j] * id, -127, 127);
    }
}

/* q4_0 / q5_0: symmetric, the largest-magnitude value maps to level 0 */
static void sym_block(const float *x, int levels, uint8_t *b, int *q) {
    float d = signed_max(x, 32) / (float)-(levels / 2), id = d != 0 ? 1.0f / d : 0.0f;
    f2h(b, d);
    for (int j = 0; j < 32; j++) q[j] = trunc_clamp(x[j] * id + ((float)(levels / 2) + 0.5f), 0, levels - 1);
}
/* q4_1 / q5_1: minimum and step */
static void affine_block(const float *x, int levels, uint8_t *b, int *q) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) { mn = x[j] < mn ? x[j] : mn; mx = x[j] > mx ? x[j] : mx; }
    float d = (mx - mn) / (float)(levels - 1), id = d != 0 ? 1.0f / d : 0.0f;
    f2h(b, d);
    f2h(b + 2, mn);
    for (int j = 0; j < 32; j++) q[j] = trunc_clamp((x[j] - mn) * id + 0.5f, 0, levels - 1);
}
static void put_high_bits(uint8_t *p, const int *q) {
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((q[j] >> 4) & 1) << j;
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(h >> (8 * k));
}
static void low_nibs(uint8_t *qs, const int *q) {
    int l[32];
    for (int j = 0; j < 32; j++) l[j] = q[j] & 15;
    put_nibs(qs, l);
}

void moe_ggml_q4_0_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    int q[32];
    for (int64_t c = 0; c < cols; c += 32, b += 18) { sym_block(x + c, 16, b, q); put_nibs(b + 2, q); }
}
void moe_q4_1_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    int q[32];
    for (int64_t c = 0; c < cols; c += 32, b += 20) { affine_block(x + c, 16, b, q); put_nibs(b + 4, q); }
}
void moe_q5_0_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    int q[32];
    for (int64_t c = 0; c < cols; c += 32, b += 22) { sym_block(x + c, 32, b, q); put_high_bits(b + 2, q); low_nibs(b + 6, q); }
}
void moe_q5_1_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    int q[32];
    for (int64_t c = 0; c < cols; c += 32, b += 24) { affine_block(x + c, 32, b, q); put_high_bits(b + 4, q); low_nibs(b + 8, q); }
}

/* q4_k / q5_k: per sub-block step and minimum (the minimum is <= 0, stored negated), both coded in
 * 6 bits against the block's d and dmin; then each weight's level against the coded values. */
static void k_block(const float *x, int levels, uint8_t *b, int q[256]) {
    float step[8], mins[8], dmax = 0, mmax = 0;
    for (int s = 0; s < 8; s++) {
        float mn = 0, mx = 0;
        for (int l = 0; l < 32; l++) { float v = x[32 * s + l]; mn = v < mn ? v : mn; mx = v > mx ? v : mx; }
        step[s] = (mx - mn) / (float)(levels - 1);
        mins[s] = -mn;
        dmax = step[s] > dmax ? step[s] : dmax;
        mmax = mins[s] > mmax ? mins[s] : mmax;
    }
    f2h(b, dmax / 63.0f);
    f2h(b + 2, mmax / 63.0f);
    float d = h2f(b), dmin = h2f(b + 2);
    int sc[8], m[8];
    for (int s = 0; s < 8; s++) {
        sc[s] = d > 0 ? round_clamp(step[s] / d, 0, 63) : 0;
        m[s] = dmin > 0 ? round_clamp(mins[s] / dmin, 0, 63) : 0;
    }
    uint8_t *p = b + 4;
    for (int s = 0; s < 4; s++) {
        p[s] = (uint8_t)((sc[s] & 63) | (sc[s + 4] >> 4) << 6);
        p[s + 4] = (uint8_t)((m[s] & 63) | (m[s + 4] >> 4) << 6);
        p[s + 8] = (uint8_t)((sc[s + 4] & 15) | (m[s + 4] & 15) << 4);
    }
    for (int s = 0; s < 8; s++) {
        float dl = d * (float)sc[s], ml = dmin * (float)m[s];
        for (int l = 0; l < 32; l++) q[32 * s + l] = dl > 0 ? round_clamp((x[32 * s + l] + ml) / dl, 0, levels - 1) : 0;
    }
}

void moe_q4_k_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    int q[256];
    for (int64_t c = 0; c < cols; c += 256, b += 144) {
        k_block(x + c, 16, b, q);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) b[16 + 32 * k + l] = (uint8_t)(q[64 * k + l] | q[64 * k + 32 + l] << 4);
    }
}

void moe_q5_k_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    int q[256];
    for (int64_t c = 0; c < cols; c += 256, b += 176) {
        k_block(x + c, 32, b, q);
        for (int l = 0; l < 32; l++) {
            int h = 0;
            for (int s = 0; s < 8; s++) h |= ((q[32 * s + l] >> 4) & 1) << s;
            b[16 + l] = (uint8_t)h;
        }
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) b[48 + 32 * k + l] = (uint8_t)((q[64 * k + l] & 15) | (q[64 * k + 32 + l] & 15) << 4);
    }
}

void moe_q6_k_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 256, b += 210) {
        const float *v = x + c;
        float step[16], smax = 0;
        for (int s = 0; s < 16; s++) {
            step[s] = signed_max(v + 16 * s, 16) / -32.0f;
            smax = fabsf(step[s]) > fabsf(smax) ? step[s] : smax;
        }
        f2h(b + 208, smax / -128.0f);
        float d = h2f(b + 208);
        int8_t *sc = (int8_t *)(b + 192);
        int q[256];
        for (int s = 0; s < 16; s++) {
            sc[s] = (int8_t)(d != 0 ? round_clamp(step[s] / d, -128, 127) : 0);
            float dl = d * (float)sc[s];
            for (int l = 0; l < 16; l++) q[16 * s + l] = (dl != 0 ? round_clamp(v[16 * s + l] / dl, -32, 31) : 0) + 32;
        }
        memset(b, 0, 192);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, r = e % 128;
            if (r < 64) b[64 * h + r] |= (uint8_t)(q[e] & 15);
            else b[64 * h + r - 64] |= (uint8_t)((q[e] & 15) << 4);
            b[128 + 32 * h + r % 32] |= (uint8_t)(((q[e] >> 4) & 3) << (2 * (r / 32)));
        }
    }
}

void moe_mxfp4_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 32, b += 17) {
        float a = amax_of(x + c, 32);
        int e = a > 0 && isfinite(a) ? (int)floorf(log2f(a)) - 2 + 127 : 0;
        e = e < 0 ? 0 : e > 255 ? 255 : e;
        b[0] = (uint8_t)e;
        float d = moe_e8m0_half((uint8_t)e);
        int q[32];
        for (int j = 0; j < 32; j++) {
            int best = 0;
            float err = INFINITY;
            for (int k = 0; k < 16; k++) {
                float e2 = fabsf(d * (float)moe_mxfp4_values[k] - x[c + j]);
                if (e2 < err) { err = e2; best = k; }
            }
            q[j] = best;
        }
        put_nibs(b + 1, q);
    }
}

/* per block of 128: the scale that maps the largest magnitude to 448 */
void moe_f8_e4m3_b128_from_f32(const float *x, int64_t cols, void *row) {
    uint8_t *b = row;
    for (int64_t c = 0; c < cols; c += 128, b += 132) {
        float s = amax_of(x + c, 128) / 448.0f;
        if (!(s > 0) || !isfinite(s)) s = 1.0f;
        memcpy(b, &s, 4);
        for (int j = 0; j < 128; j++) b[4 + j] = moe_f32_to_e4m3(x[c + j] / s);
    }
}

/* ---- scalar kernels: dequantize a row, then sum in order ----------------------------------- */

#define SCALAR_KERNEL(t, block, bytes)                                                                      \
    void moe_gemm_##t##_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, \
                               int o0, int o1) {                                                            \
        size_t rb = (size_t)(in / (block)) * (bytes);                                                       \
        float stack[1024], *row = in <= 1024 ? stack : moe_alloc(sizeof(float) * (size_t)in);               \
        for (int o = o0; o < o1; o++) {                                                                     \
            if (row) moe_##t##_to_f32((const uint8_t *)w + (size_t)o * rb, in, row);                       \
            for (int t_ = 0; t_ < n; t_++) {                                                                \
                float s = 0;                                                                                \
                for (int i = 0; row && i < in; i++) s += x[(size_t)t_ * ldx + i] * row[i];                 \
                y[(size_t)t_ * ldy + o] = row ? s : NAN;                                                    \
            }                                                                                               \
        }                                                                                                   \
        if (row != stack) moe_free(row);                                                                    \
    }
SCALAR_KERNEL(ggml_q8_0, 32, 34)
SCALAR_KERNEL(ggml_q4_0, 32, 18)
SCALAR_KERNEL(q4_1, 32, 20)
SCALAR_KERNEL(q5_0, 32, 22)
SCALAR_KERNEL(q5_1, 32, 24)
SCALAR_KERNEL(q4_k, 256, 144)
SCALAR_KERNEL(q5_k, 256, 176)
SCALAR_KERNEL(q6_k, 256, 210)
SCALAR_KERNEL(mxfp4, 32, 17)
SCALAR_KERNEL(f8_e4m3_b128, 128, 132)
