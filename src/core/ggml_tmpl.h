/* ggml_tmpl.h - SIMD products of the ggml block formats (ggml_types.h), written once over the vector
 * vocabulary of vec_avx2.h / vec_avx512.h and included by ggml_avx2.c and ggml_avx512.c. The block
 * dequantizers are ggml_deq_avx2.h's (exact: they compute what the scalar converters compute).
 *
 * Decode (n < 8): rows four at a time, GG_MAXN x rows per pass over them (W is read once per pass).
 * Weights are never dequantized: the codes q of a scale group g (w = d_g q + a_g) are unpacked to f32
 * in registers and multiplied into a partial sum, which is folded into the accumulator with d_g once
 * per group; the a_g terms use the sums of x over each group, computed once per call. So the inner
 * loop is unpack, convert, one multiply-add per weight. The same blocks of the next four rows are
 * prefetched (rows of a few hundred bytes to a few KiB end before the hardware prefetcher ramps up).
 * The sums come out in another order than the scalar kernel's, so decode results agree with it to
 * rounding (tests/unit/test_ggml_types.c: 1e-5 of sum |x w|).
 *
 * Prefill (n >= 8): tiles of rows (about 2 MiB of f32) are dequantized into a buffer and handed to
 * this level's f32 kernel, so the result is bit for bit the f32 product with the dequantized matrix
 * (tests/unit/test_ggml_types.c checks this). Large tiles because that kernel copies x once per call.
 * Without memory for a tile, the decode path computes the product instead. */
#ifndef VW
#error "include vec_avx2.h or vec_avx512.h before ggml_tmpl.h"
#endif
#include "core/alloc.h"
#include "core/ggml_deq_avx2.h"
#include "core/matmul.h"
#include <math.h>

#define GG_UNROLL _Pragma("GCC unroll 8")
#define GG_TILE_BYTES ((size_t)2 << 20)
#define GG_R 4   /* W rows per pass */

typedef void (*gg_deq_fn)(const uint8_t *blk, float *out);

/* ---- VW lanes of int32 for unpacking quant codes ---- */
#if VW == 8
#define GG_MAXN 1   /* x rows per pass: 4 rows x N x (accumulator, partial sum, scale term) fit 16 ymm */
typedef __m256i vi;
VINLINE vi vi_u8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
VINLINE vi vi_i8(const uint8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
VINLINE vi vi_set1(int a) { return _mm256_set1_epi32(a); }
VINLINE vi vi_iota(void) { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
VINLINE vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
VINLINE vi vi_or(vi a, vi b) { return _mm256_or_si256(a, b); }
VINLINE vi vi_add(vi a, vi b) { return _mm256_add_epi32(a, b); }
VINLINE vi vi_srl(vi a, int n) { return _mm256_srl_epi32(a, _mm_cvtsi32_si128(n)); }
VINLINE vi vi_sll(vi a, int n) { return _mm256_sll_epi32(a, _mm_cvtsi32_si128(n)); }
VINLINE vi vi_srlv(vi a, vi n) { return _mm256_srlv_epi32(a, n); }
VINLINE vf vi_cvt(vi a) { return _mm256_cvtepi32_ps(a); }
/* mxfp4 values by index: the first 8 looked up, the sign from bit 3 */
VINLINE vf vi_mxfp4(vi idx) {
    const __m256 tab = _mm256_setr_ps(0, 1, 2, 3, 4, 6, 8, 12);
    __m256 v = _mm256_permutevar8x32_ps(tab, idx);
    return _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(idx, 3), 31)));
}
VINLINE vf vi_e4m3(vi q) { return gg_e4m3x8(q); }
#else
#define GG_MAXN 2
typedef __m512i vi;
VINLINE vi vi_u8(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
VINLINE vi vi_i8(const uint8_t *p) { return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)); }
VINLINE vi vi_set1(int a) { return _mm512_set1_epi32(a); }
VINLINE vi vi_iota(void) { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
VINLINE vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
VINLINE vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
VINLINE vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
VINLINE vi vi_srl(vi a, int n) { return _mm512_srl_epi32(a, _mm_cvtsi32_si128(n)); }
VINLINE vi vi_sll(vi a, int n) { return _mm512_sll_epi32(a, _mm_cvtsi32_si128(n)); }
VINLINE vi vi_srlv(vi a, vi n) { return _mm512_srlv_epi32(a, n); }
VINLINE vf vi_cvt(vi a) { return _mm512_cvtepi32_ps(a); }
VINLINE vf vi_mxfp4(vi idx) {
    const __m512 tab = _mm512_setr_ps(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    return _mm512_permutexvar_ps(idx, tab);
}
VINLINE vf vi_e4m3(vi q) {   /* see gg_e4m3x8 */
    __m512i em = _mm512_and_si512(q, _mm512_set1_epi32(0x7f));
    __m512i bits = _mm512_or_si512(_mm512_slli_epi32(em, 20), _mm512_slli_epi32(_mm512_and_si512(q, _mm512_set1_epi32(0x80)), 24));
    __m512 v = _mm512_mul_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(0x1p120f));
    return _mm512_mask_mov_ps(v, _mm512_cmpeq_epi32_mask(em, _mm512_set1_epi32(0x7f)), _mm512_set1_ps(__builtin_nanf("")));
}
#endif

/* ---- decode: quant codes and scales per format ----
 * The decode kernels compute sum_j x_j w_j as sum over scale groups g of d_g * (sum_j x_j q_j) + a_g *
 * (sum_j x_j), where w = d_g q + a_g on group g: the codes q are multiplied into a partial sum, which
 * is folded into the accumulator with d_g once per group, and the x sums of every group are computed
 * once per call, so the inner loop is unpack, convert, one multiply-add per weight. */

/* elements e..e+VW of a 32-weight nibble block (low nibbles are elements 0-15) */
VINLINE vi gg_nib(const uint8_t *qs, int e) {
    return e < 16 ? vi_and(vi_u8(qs + e), vi_set1(15)) : vi_srl(vi_u8(qs + e - 16), 4);
}
/* bit 4 of elements e..e+VW of a q5 block from its u32 of high bits */
VINLINE vi gg_hi5(uint32_t qh, int e) {
    return vi_sll(vi_and(vi_srlv(vi_set1((int)qh), vi_add(vi_iota(), vi_set1(e))), vi_set1(1)), 4);
}

VINLINE vf q_ggml_q8_0(const uint8_t *b, int e) { return vi_cvt(vi_i8(b + 2 + e)); }
VINLINE vf q_ggml_q4_0(const uint8_t *b, int e) { return vi_cvt(gg_nib(b + 2, e)); }
VINLINE vf q_q4_1(const uint8_t *b, int e) { return vi_cvt(gg_nib(b + 4, e)); }
VINLINE vf q_q5_0(const uint8_t *b, int e) { return vi_cvt(vi_or(gg_nib(b + 6, e), gg_hi5(gg_u32(b + 2), e))); }
VINLINE vf q_q5_1(const uint8_t *b, int e) { return vi_cvt(vi_or(gg_nib(b + 8, e), gg_hi5(gg_u32(b + 4), e))); }
VINLINE vf q_mxfp4(const uint8_t *b, int e) { return vi_mxfp4(gg_nib(b + 1, e)); }
VINLINE vf q_f8_e4m3_b128(const uint8_t *b, int e) { return vi_e4m3(vi_u8(b + 4 + e)); }

/* w = *d * q + *a for a 32-weight block */
VINLINE void s_ggml_q8_0(const uint8_t *b, float *d, float *a) { *d = gg_h2f(b); *a = 0; }
VINLINE void s_ggml_q4_0(const uint8_t *b, float *d, float *a) { *d = gg_h2f(b); *a = -8.0f * *d; }
VINLINE void s_q4_1(const uint8_t *b, float *d, float *a) { *d = gg_h2f(b); *a = gg_h2f(b + 2); }
VINLINE void s_q5_0(const uint8_t *b, float *d, float *a) { *d = gg_h2f(b); *a = -16.0f * *d; }
VINLINE void s_q5_1(const uint8_t *b, float *d, float *a) { *d = gg_h2f(b); *a = gg_h2f(b + 2); }
VINLINE void s_mxfp4(const uint8_t *b, float *d, float *a) { *d = moe_e8m0_half(b[0]); *a = 0; }
VINLINE void s_f8_e4m3_b128(const uint8_t *b, float *d, float *a) { memcpy(d, b, 4); *a = 0; }

/* q4_k / q5_k: codes of sub-block s, elements e..e+VW */
VINLINE vf q_q4_k(const uint8_t *b, int s, int e) {
    vi v = vi_u8(b + 16 + 32 * (s / 2) + e);
    return vi_cvt(s & 1 ? vi_srl(v, 4) : vi_and(v, vi_set1(15)));
}
VINLINE vf q_q5_k(const uint8_t *b, int s, int e) {
    vi v = vi_u8(b + 48 + 32 * (s / 2) + e);
    v = s & 1 ? vi_srl(v, 4) : vi_and(v, vi_set1(15));
    vi h = vi_sll(vi_and(vi_srl(vi_u8(b + 16 + e), s), vi_set1(1)), 4);
    return vi_cvt(vi_or(v, h));
}
/* the eight 6-bit scales and minimums of a q4_k/q5_k block, times d and dmin (llama.cpp's unpacking) */
VINLINE void gg_k4_scales(const uint8_t *b, __m256 *dl, __m256 *ml) {
    uint32_t u[4];
    memcpy(u, b + 4, 12);
    const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
    uint32_t t = u[1] & k1;
    u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
    u[2] = t;
    u[0] &= k1;
    __m128i sm = _mm_loadu_si128((const __m128i *)u);   /* scales in bytes 0-7, mins in 8-15 */
    *dl = _mm256_mul_ps(_mm256_set1_ps(gg_h2f(b)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)));
    *ml = _mm256_mul_ps(_mm256_set1_ps(gg_h2f(b + 2)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))));
}
/* q6_k: codes (without the -32) of elements e..e+VW */
VINLINE vf q_q6_k(const uint8_t *b, int e) {
    int h = e / 128, r = e % 128;
    vi lo = vi_u8(b + 64 * h + r % 64);
    lo = r < 64 ? vi_and(lo, vi_set1(15)) : vi_srl(lo, 4);
    vi hi = vi_and(vi_srl(vi_u8(b + 128 + 32 * h + r % 32), 2 * (r / 32)), vi_set1(3));
    return vi_cvt(vi_or(lo, vi_sll(hi, 4)));
}

/* sums of x over groups of `g` elements, for N rows: xs[t * (in / g) + k] */
static void gg_xsums(const float *x, size_t ldx, int n, int in, int g, float *xs) {
    int ng = in / g;
    for (int t = 0; t < n; t++)
        for (int k = 0; k < ng; k++) {
            const float *p = x + (size_t)t * ldx + (size_t)k * g;
            float s = 0;
            for (int j = 0; j < g; j++) s += p[j];
            xs[(size_t)t * ng + k] = s;
        }
}

typedef vf (*gg_q32_fn)(const uint8_t *, int);
typedef void (*gg_s32_fn)(const uint8_t *, float *, float *);

VINLINE void gg_rows(const uint8_t *w, size_t rb, int o, int o1, const uint8_t *row[GG_R], const uint8_t *next[GG_R]) {
    for (int r = 0; r < GG_R; r++) {
        row[r] = w + (size_t)(o + r < o1 ? o + r : o1 - 1) * rb;
        next[r] = o + GG_R + r < o1 ? row[r] + GG_R * rb : NULL;
    }
}
VINLINE void gg_prefetch(const uint8_t *p, int bytes) {
    if (p) for (int k = 0; k < bytes; k += 64) vprefetch(p + k);
}
VINLINE void gg_store(float *y, size_t ldy, int o, int o1, const int N, vf acc[GG_R][GG_MAXN], float add[GG_R][GG_MAXN]) {
    for (int r = 0; r < GG_R && o + r < o1; r++)
        GG_UNROLL for (int t = 0; t < N; t++) y[(size_t)t * ldy + o + r] = vhsum(acc[r][t]) + add[r][t];
}

/* blocks of BS weights (32, or 128 for FP8), one scale group each */
VINLINE void gg_gemv32(float *y, size_t ldy, const float *x, size_t ldx, const float *xs, const uint8_t *w, size_t rb,
                       int in, int o, int o1, const int N, gg_q32_fn qf, gg_s32_fn sf, const int BS, const int BB) {
    const uint8_t *row[GG_R], *next[GG_R];
    gg_rows(w, rb, o, o1, row, next);
    vf acc[GG_R][GG_MAXN];
    float add[GG_R][GG_MAXN];
    GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) { acc[r][t] = vzero(); add[r][t] = 0; }
    int nb = in / BS;
    for (int b = 0; b < nb; b++) {
        float d[GG_R], a[GG_R];
        GG_UNROLL for (int r = 0; r < GG_R; r++) {
            const uint8_t *blk = row[r] + (size_t)b * BB;
            sf(blk, &d[r], &a[r]);
            if (next[r] && (BS > 32 || (b & 1) == 0)) gg_prefetch(next[r] + (size_t)b * BB, BS > 32 ? BB : 2 * BB);
        }
        vf part[GG_R][GG_MAXN];
        GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) part[r][t] = vzero();
        GG_UNROLL for (int e = 0; e < BS; e += VW) {
            vf xv[GG_MAXN];
            GG_UNROLL for (int t = 0; t < N; t++) xv[t] = vload(x + (size_t)t * ldx + (size_t)b * BS + e);
            GG_UNROLL for (int r = 0; r < GG_R; r++) {
                vf q = qf(row[r] + (size_t)b * BB, e);
                GG_UNROLL for (int t = 0; t < N; t++) part[r][t] = vfma(xv[t], q, part[r][t]);
            }
        }
        GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) {
            acc[r][t] = vfma(part[r][t], vset1(d[r]), acc[r][t]);
            add[r][t] += a[r] * xs[(size_t)t * nb + b];
        }
    }
    gg_store(y, ldy, o, o1, N, acc, add);
}

/* q4_k (q5 == 0) and q5_k: 256-weight blocks of eight 32-weight groups */
VINLINE void gg_gemv_k45(float *y, size_t ldy, const float *x, size_t ldx, const float *xs, const uint8_t *w, size_t rb,
                         int in, int o, int o1, const int N, const int q5) {
    const int BB = q5 ? 176 : 144;
    const uint8_t *row[GG_R], *next[GG_R];
    gg_rows(w, rb, o, o1, row, next);
    vf acc[GG_R][GG_MAXN];
    __m256 mac[GG_R][GG_MAXN];   /* the minimum terms, one lane per group */
    GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) { acc[r][t] = vzero(); mac[r][t] = _mm256_setzero_ps(); }
    int nb = in / 256;
    for (int b = 0; b < nb; b++) {
        float dl[GG_R][8] __attribute__((aligned(32)));
        GG_UNROLL for (int r = 0; r < GG_R; r++) {
            const uint8_t *blk = row[r] + (size_t)b * BB;
            __m256 d8, m8;
            gg_k4_scales(blk, &d8, &m8);
            _mm256_store_ps(dl[r], d8);
            GG_UNROLL for (int t = 0; t < N; t++)
                mac[r][t] = _mm256_fmadd_ps(m8, _mm256_loadu_ps(xs + (size_t)t * nb * 8 + (size_t)b * 8), mac[r][t]);
            gg_prefetch(next[r] ? next[r] + (size_t)b * BB : NULL, BB);
        }
        for (int s = 0; s < 8; s++) {
            vf part[GG_R][GG_MAXN];
            GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) part[r][t] = vzero();
            GG_UNROLL for (int e = 0; e < 32; e += VW) {
                vf xv[GG_MAXN];
                GG_UNROLL for (int t = 0; t < N; t++) xv[t] = vload(x + (size_t)t * ldx + (size_t)b * 256 + 32 * s + e);
                GG_UNROLL for (int r = 0; r < GG_R; r++) {
                    const uint8_t *blk = row[r] + (size_t)b * BB;
                    vf q = q5 ? q_q5_k(blk, s, e) : q_q4_k(blk, s, e);
                    GG_UNROLL for (int t = 0; t < N; t++) part[r][t] = vfma(xv[t], q, part[r][t]);
                }
            }
            GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++)
                acc[r][t] = vfma(part[r][t], vset1(dl[r][s]), acc[r][t]);
        }
    }
    float add[GG_R][GG_MAXN];
    GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(mac[r][t]), _mm256_extractf128_ps(mac[r][t], 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        add[r][t] = -_mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
    }
    gg_store(y, ldy, o, o1, N, acc, add);
}

/* q6_k: 256-weight blocks of sixteen 16-weight groups, w = d sc (q - 32) */
VINLINE void gg_gemv_q6k(float *y, size_t ldy, const float *x, size_t ldx, const float *xs, const uint8_t *w, size_t rb,
                         int in, int o, int o1, const int N) {
    const uint8_t *row[GG_R], *next[GG_R];
    gg_rows(w, rb, o, o1, row, next);
    vf acc[GG_R][GG_MAXN];
    __m256 mac[GG_R][GG_MAXN];   /* sum over groups of d sc * sum x, two halves folded */
    GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) { acc[r][t] = vzero(); mac[r][t] = _mm256_setzero_ps(); }
    int nb = in / 256;
    for (int b = 0; b < nb; b++) {
        float dl[GG_R][16] __attribute__((aligned(32)));
        GG_UNROLL for (int r = 0; r < GG_R; r++) {
            const uint8_t *blk = row[r] + (size_t)b * 210;
            __m256 d = _mm256_set1_ps(gg_h2f(blk + 208));
            __m128i sc = _mm_loadu_si128((const __m128i *)(blk + 192));
            __m256 lo = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
            __m256 hi = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))));
            _mm256_store_ps(dl[r], lo);
            _mm256_store_ps(dl[r] + 8, hi);
            GG_UNROLL for (int t = 0; t < N; t++) {
                const float *xb = xs + (size_t)t * nb * 16 + (size_t)b * 16;
                mac[r][t] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xb), mac[r][t]);
                mac[r][t] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xb + 8), mac[r][t]);
            }
            gg_prefetch(next[r] ? next[r] + (size_t)b * 210 : NULL, 210);
        }
        for (int g = 0; g < 16; g++) {
            vf part[GG_R][GG_MAXN];
            GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) part[r][t] = vzero();
            GG_UNROLL for (int e = 0; e < 16; e += VW) {
                vf xv[GG_MAXN];
                GG_UNROLL for (int t = 0; t < N; t++) xv[t] = vload(x + (size_t)t * ldx + (size_t)b * 256 + 16 * g + e);
                GG_UNROLL for (int r = 0; r < GG_R; r++) {
                    vf q = q_q6_k(row[r] + (size_t)b * 210, 16 * g + e);
                    GG_UNROLL for (int t = 0; t < N; t++) part[r][t] = vfma(xv[t], q, part[r][t]);
                }
            }
            GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++)
                acc[r][t] = vfma(part[r][t], vset1(dl[r][g]), acc[r][t]);
        }
    }
    float add[GG_R][GG_MAXN];
    GG_UNROLL for (int r = 0; r < GG_R; r++) GG_UNROLL for (int t = 0; t < N; t++) {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(mac[r][t]), _mm256_extractf128_ps(mac[r][t], 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        add[r][t] = -32.0f * _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
    }
    gg_store(y, ldy, o, o1, N, acc, add);
}

enum { GG_32, GG_K4, GG_K5, GG_K6, GG_F8 };

/* one pass over rows [o0, o1) for N x rows */
VINLINE void gg_gemv_pass(float *y, size_t ldy, const float *x, size_t ldx, const float *xs, const uint8_t *w, size_t rb,
                          int in, int o0, int o1, const int N, const int fam, gg_q32_fn qf, gg_s32_fn sf, const int BB) {
    for (int o = o0; o < o1; o += GG_R) {
        if (fam == GG_32) gg_gemv32(y, ldy, x, ldx, xs, w, rb, in, o, o1, N, qf, sf, 32, BB);
        else if (fam == GG_F8) gg_gemv32(y, ldy, x, ldx, xs, w, rb, in, o, o1, N, qf, sf, 128, BB);
        else if (fam == GG_K6) gg_gemv_q6k(y, ldy, x, ldx, xs, w, rb, in, o, o1, N);
        else gg_gemv_k45(y, ldy, x, ldx, xs, w, rb, in, o, o1, N, fam == GG_K5);
    }
}

VINLINE void gg_gemv(float *y, size_t ldy, const float *x, size_t ldx, int n, const uint8_t *w, size_t rb, int in,
                     int o0, int o1, const int fam, gg_q32_fn qf, gg_s32_fn sf, const int BB) {
    int g = fam == GG_K6 ? 16 : fam == GG_F8 ? 128 : 32;
    size_t nxs = (size_t)n * (size_t)(in / g);
    float stack[2048], *xs = nxs <= 2048 ? stack : moe_alloc(sizeof(float) * nxs);
    if (!xs) {
        for (int t = 0; t < n; t++)
            for (int o = o0; o < o1; o++) y[(size_t)t * ldy + o] = NAN;
        return;
    }
    gg_xsums(x, ldx, n, in, g, xs);
    size_t xs_row = (size_t)(in / g);
    for (int t = 0; t < n; t += GG_MAXN) {
        const float *xt = x + (size_t)t * ldx, *xst = xs + (size_t)t * xs_row;
        float *yt = y + (size_t)t * ldy;
#if GG_MAXN > 1
        if (n - t >= 2) { gg_gemv_pass(yt, ldy, xt, ldx, xst, w, rb, in, o0, o1, 2, fam, qf, sf, BB); continue; }
#endif
        gg_gemv_pass(yt, ldy, xt, ldx, xst, w, rb, in, o0, o1, 1, fam, qf, sf, BB);
    }
    if (xs != stack) moe_free(xs);
}

VINLINE void gg_gemm(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *wv, int in, int o0,
                     int o1, gg_deq_fn deq, const int BS, const int BB, moe_gemm_kernel f32k, const int fam, gg_q32_fn qf,
                     gg_s32_fn sf) {
    if (n <= 0 || o0 >= o1) return;
    const uint8_t *w = wv;
    int nb = in / BS;
    size_t rb = (size_t)nb * BB;
    if (in <= 0 || nb * BS != in) { /* ggml rows are whole blocks; the loaders enforce it */
        for (int t = 0; t < n; t++)
            for (int o = o0; o < o1; o++) y[(size_t)t * ldy + o] = in == 0 ? 0.0f : NAN;
        return;
    }
    if (n < 8) { gg_gemv(y, ldy, x, ldx, n, w, rb, in, o0, o1, fam, qf, sf, BB); return; }
    int tile = (int)(GG_TILE_BYTES / ((size_t)in * sizeof(float)));
    if (tile < 4) tile = 4;
    if (tile > o1 - o0) tile = o1 - o0;
    float *buf = moe_alloc((size_t)tile * (size_t)in * sizeof(float));
    if (!buf) { gg_gemv(y, ldy, x, ldx, n, w, rb, in, o0, o1, fam, qf, sf, BB); return; }
    for (int o = o0; o < o1; o += tile) {
        int r = o1 - o < tile ? o1 - o : tile;
        for (int rr = 0; rr < r; rr++) {
            const uint8_t *src = w + (size_t)(o + rr) * rb;
            float *dst = buf + (size_t)rr * in;
            for (int b = 0; b < nb; b++) deq(src + (size_t)b * BB, dst + (size_t)b * BS);
        }
        f32k(y + o, ldy, x, ldx, n, buf, in, 0, r);
    }
    moe_free(buf);
}

#define GG_NAME_(t, isa) moe_gemm_##t##_##isa
#define GG_NAME(t, isa) GG_NAME_(t, isa)
#define GG_F32K_(isa) moe_gemm_f32_##isa
#define GG_F32K(isa) GG_F32K_(isa)
#define GG_DEFINE(t, BS, BB, FAM, QF, SF)                                                                   \
    void GG_NAME(t, VEC_ISA)(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in,   \
                             int o0, int o1) {                                                              \
        gg_gemm(y, ldy, x, ldx, n, w, in, o0, o1, deq_##t, BS, BB, GG_F32K(VEC_ISA), FAM, QF, SF);          \
    }
GG_DEFINE(ggml_q8_0, 32, 34, GG_32, q_ggml_q8_0, s_ggml_q8_0)
GG_DEFINE(ggml_q4_0, 32, 18, GG_32, q_ggml_q4_0, s_ggml_q4_0)
GG_DEFINE(q4_1, 32, 20, GG_32, q_q4_1, s_q4_1)
GG_DEFINE(q5_0, 32, 22, GG_32, q_q5_0, s_q5_0)
GG_DEFINE(q5_1, 32, 24, GG_32, q_q5_1, s_q5_1)
GG_DEFINE(q4_k, 256, 144, GG_K4, NULL, NULL)
GG_DEFINE(q5_k, 256, 176, GG_K5, NULL, NULL)
GG_DEFINE(q6_k, 256, 210, GG_K6, NULL, NULL)
GG_DEFINE(mxfp4, 32, 17, GG_32, q_mxfp4, s_mxfp4)
GG_DEFINE(f8_e4m3_b128, 128, 132, GG_F8, q_f8_e4m3_b128, s_f8_e4m3_b128)
