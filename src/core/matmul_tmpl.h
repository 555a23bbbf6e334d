/* matmul_tmpl.h - the dense product kernels, written once over the vector vocabulary of vec_avx2.h /
 * vec_avx512.h and included by matmul_avx2.c and matmul_avx512.c (a C "template": the functions
 * are always_inline with constant shape arguments, so every instantiation becomes straight-line
 * register code). Tile shapes and block sizes are in matmul_shapes.h. Three paths, by x rows n:
 *
 * Decode (n < MM_MIN_N = 8): one pass over W per group of up to four x rows, vectors along `in`
 * (the contiguous direction of x rows and W rows in the nn.Linear [out][in] layout). A tile holds
 * N x rows times R W rows times U independent accumulators; each weight vector is loaded and
 * widened once and feeds N FMAs, so W is read from memory exactly once. R rows of W stream side by
 * side (R*U dependency chains, so FMA latency never limits the rate), with a software prefetch
 * that for short rows targets the next tile (the hardware prefetcher ramps up too late for 1-2 KiB
 * rows). bf16 rows are read as pairs (one 2*VW load, even elements by a shift, odd ones by a mask)
 * against an even/odd-permuted copy of x, which halves the widening work; vhsum4 then reduces four
 * accumulators in one tree.
 *
 * Small prefill (MM_MIN_N <= n < MMB_MIN_N): same orientation, now reusing data from cache. Loops,
 * outer to inner: MM_MC rows of x, MM_KC columns of `in`, MM_GR=4 rows of W widened into a small
 * L1 buffer (wb, zero-padded to a multiple of VW and to 4 rows), micro-tiles of MM_MR x rows by
 * those 4 W rows (MM_MR x loads and 4 weight loads feed 4*MM_MR FMAs). Partial sums of successive
 * KC slices are added into y.
 *
 * Large prefill (n >= MMB_MIN_N = 32): a BLIS-style broadcast micro-kernel on transposed W panels,
 * see mmb_blocked below; no horizontal sums, close to the FMA peak.
 *
 * bf16/f16 weights are widened block by block into L1/L2-sized buffers: the full matrix is never
 * converted. Ragged edges: partial vectors are loaded with lane masks (never past `in` or the last
 * row), W rows past o1 are zero rows whose results are dropped, x-row remainders use narrower
 * tiles. */
#ifndef VW
#error "include vec_avx2.h or vec_avx512.h before matmul_tmpl.h"
#endif
#include "core/alloc.h"
#include "core/matmul.h"

#define GEMV_STACK_FLOATS 8192
#ifndef GEMV_PF
#define GEMV_PF 1
#endif
#ifndef GEMV_PF_TILE
#define GEMV_PF_TILE 16384
#endif
#ifndef GEMV_PF_TILES
#define GEMV_PF_TILES 1
#endif
#ifndef GEMV_PF_DIST
#define GEMV_PF_DIST 1024
#endif

#define MM_GR 4
#define UNROLL _Pragma("GCC unroll 16")

enum { DT_F32, DT_BF16, DT_F16 };
#define DT_SIZE(dt) ((dt) == DT_F32 ? (size_t)4 : (size_t)2)

VINLINE vf loadw(const int dt, const void *w, size_t i) {
    return dt == DT_F32 ? vw_f32(w, i) : dt == DT_BF16 ? vw_bf16(w, i) : vw_f16(w, i);
}
VINLINE vf loadw_n(const int dt, const void *w, size_t i, int k) {
    return dt == DT_F32 ? vw_f32_n(w, i, k) : dt == DT_BF16 ? vw_bf16_n(w, i, k) : vw_f16_n(w, i, k);
}

/* y[a*ldy + r] (+)= sum of acc[a][r] lanes, for r < rvalid. */
VINLINE void put_sums(float *y, vf a0, vf a1, vf a2, vf a3, int rvalid, int accumulate) {
    __m128 s = vhsum4(a0, a1, a2, a3);
    if (rvalid == 4) {
        if (accumulate) s = _mm_add_ps(s, _mm_loadu_ps(y));
        _mm_storeu_ps(y, s);
    } else {
        float t[4];
        _mm_storeu_ps(t, s);
        for (int r = 0; r < rvalid; r++) y[r] = accumulate ? y[r] + t[r] : t[r];
    }
}

/* ---- decode: y[a][0..R) = x[a] . W[r] over the whole of `in`, a < N ---- */
VINLINE void gemv_tile(float *y, size_t ldy, const float *x, size_t ldx, const float *xp, size_t ldp,
                       const char *w, size_t ws, size_t pfo, int in, const int N, const int R, const int U,
                       const int dt) {
    vf acc[4][4][2];
    const char *wr[4];
    UNROLL for (int r = 0; r < R; r++) wr[r] = w + (size_t)r * ws;
    UNROLL for (int a = 0; a < N; a++) UNROLL for (int r = 0; r < R; r++) UNROLL for (int u = 0; u < 2; u++)
        acc[a][r][u] = vzero();
    int i = 0;
    if (dt == DT_BF16 && xp && N <= GEMV_PAIR_MAXN) {
        /* bf16 pairs against the even/odd-permuted copy of x; U == 1 tiles chain both halves into one
         * accumulator (enough independent chains already), U == 2 tiles keep them apart. */
        for (; i + 2 * VW <= in; i += 2 * VW) {
            vf xe[4], xo[4];
            if (GEMV_PF) UNROLL for (int r = 0; r < R; r++) vprefetch(wr[r] + pfo + (size_t)i * 2);
            UNROLL for (int a = 0; a < N; a++) {
                xe[a] = vload(xp + a * ldp + i);
                xo[a] = vload(xp + a * ldp + i + VW);
            }
            UNROLL for (int r = 0; r < R; r++) {
                vf we, wo;
                vw_bf16_pair(wr[r], (size_t)i, &we, &wo);
                UNROLL for (int a = 0; a < N; a++) {
                    acc[a][r][0] = vfma(xe[a], we, acc[a][r][0]);
                    acc[a][r][U - 1] = vfma(xo[a], wo, acc[a][r][U - 1]);
                }
            }
        }
    }
    for (; i + U * VW <= in; i += U * VW) {
        vf xv[4][2];
        if (GEMV_PF) UNROLL for (int r = 0; r < R; r++) vprefetch(wr[r] + pfo + (size_t)i * DT_SIZE(dt));
        UNROLL for (int a = 0; a < N; a++) UNROLL for (int u = 0; u < U; u++) xv[a][u] = vload(x + a * ldx + i + u * VW);
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int u = 0; u < U; u++) {
            vf wv = loadw(dt, wr[r], (size_t)i + u * VW);
            UNROLL for (int a = 0; a < N; a++) acc[a][r][u] = vfma(xv[a][u], wv, acc[a][r][u]);
        }
    }
    if (U > 1)
        for (; i + VW <= in; i += VW) {
            vf xv[4];
            UNROLL for (int a = 0; a < N; a++) xv[a] = vload(x + a * ldx + i);
            UNROLL for (int r = 0; r < R; r++) {
                vf wv = loadw(dt, wr[r], (size_t)i);
                UNROLL for (int a = 0; a < N; a++) acc[a][r][0] = vfma(xv[a], wv, acc[a][r][0]);
            }
        }
    if (i < in) {
        int k = in - i;
        vf xv[4];
        UNROLL for (int a = 0; a < N; a++) xv[a] = vload_n(x + a * ldx + i, k);
        UNROLL for (int r = 0; r < R; r++) {
            vf wv = loadw_n(dt, wr[r], (size_t)i, k);
            UNROLL for (int a = 0; a < N; a++) acc[a][r][0] = vfma(xv[a], wv, acc[a][r][0]);
        }
    }
    UNROLL for (int a = 0; a < N; a++) {
        if (U > 1) UNROLL for (int r = 0; r < R; r++) acc[a][r][0] = vadd(acc[a][r][0], acc[a][r][1]);
        if (R == 4) put_sums(y + a * ldy, acc[a][0][0], acc[a][1][0], acc[a][2][0], acc[a][3][0], 4, 0);
        else UNROLL for (int r = 0; r < R; r++) y[a * ldy + r] = vhsum(acc[a][r][0]);
    }
}

/* N x rows against W rows [o0,o1): R rows at a time, then one at a time. */
VINLINE void gemv_rows(float *y, size_t ldy, const float *x, size_t ldx, const float *xp, size_t ldp, const void *w,
                       int in, int o0, int o1, const int N, const int R, const int U, const int dt) {
    size_t ws = (size_t)in * DT_SIZE(dt);
    /* Software prefetch distance: short rows end before the hardware prefetcher ramps up, so fetch
     * the same place in the next tile's rows; long rows just run a fixed distance ahead. */
    size_t pfo = (size_t)R * ws <= GEMV_PF_TILE ? (size_t)R * ws * GEMV_PF_TILES : GEMV_PF_DIST;
    const char *W = w;
    int o = o0;
    for (; o + R <= o1; o += R) gemv_tile(y + o, ldy, x, ldx, xp, ldp, W + (size_t)o * ws, ws, pfo, in, N, R, U, dt);
    for (; o < o1; o++) gemv_tile(y + o, ldy, x, ldx, xp, ldp, W + (size_t)o * ws, ws, ws, in, N, 1, 2, dt);
}

/* The even/odd permutation of x that vw_bf16_pair expects, per block of 2*VW (whole blocks only). */
static void permute_pairs(float *xp, size_t ldp, const float *x, size_t ldx, int n, int in) {
    int blocks = in / (2 * VW);
    for (int t = 0; t < n; t++)
        for (int b = 0; b < blocks; b++) {
            const float *s = x + t * ldx + (size_t)b * 2 * VW;
            float *d = xp + t * ldp + (size_t)b * 2 * VW;
            for (int j = 0; j < VW; j++) {
                d[j] = s[2 * j];
                d[VW + j] = s[2 * j + 1];
            }
        }
}

/* ---- prefill ---- */

/* Widen rows [0,r) x columns [k0,k0+kc) of W into wb (MM_GR rows of stride MM_KC), zero-padding the
 * columns to a multiple of VW and the rows to MM_GR; then hint the next block's rows into cache. */
VINLINE void mm_pack(float *wb, const char *w, size_t ws, int k0, int kc, int r, const char *next,
                     const int dt) {
    int kcv = (kc + VW - 1) & ~(VW - 1);
    for (int rr = 0; rr < r; rr++) {
        const char *src = w + (size_t)rr * ws;
        float *dst = wb + rr * MM_KC;
        int i = 0;
        for (; i + VW <= kc; i += VW) vstore(dst + i, loadw(dt, src, (size_t)k0 + i));
        if (i < kc) vstore(dst + i, loadw_n(dt, src, (size_t)k0 + i, kc - i));
    }
    for (int rr = r; rr < MM_GR; rr++)
        for (int i = 0; i < kcv; i += VW) vstore(wb + rr * MM_KC + i, vzero());
    if (next) {
        size_t bytes = (size_t)kc * DT_SIZE(dt);
        for (int rr = 0; rr < MM_GR; rr++)
            for (size_t b = 0; b < bytes; b += 64) vprefetch(next + (size_t)rr * ws + (size_t)k0 * DT_SIZE(dt) + b);
    }
}

/* y[m][0..rvalid) (+)= x[m][0..kc) . wb[r][0..kc), m < M. */
VINLINE void mm_tile(float *y, size_t ldy, const float *x, size_t ldx, const float *wb, int kc, int rvalid,
                     int accumulate, const int M) {
    vf acc[MM_MR][MM_GR];
    UNROLL for (int m = 0; m < M; m++) UNROLL for (int r = 0; r < MM_GR; r++) acc[m][r] = vzero();
    int i = 0;
    for (; i + VW <= kc; i += VW) {
        vf xv[MM_MR];
        UNROLL for (int m = 0; m < M; m++) xv[m] = vload(x + m * ldx + i);
        UNROLL for (int r = 0; r < MM_GR; r++) {
            vf wv = vload(wb + r * MM_KC + i);
            UNROLL for (int m = 0; m < M; m++) acc[m][r] = vfma(xv[m], wv, acc[m][r]);
        }
    }
    if (i < kc) {
        vf xv[MM_MR];
        UNROLL for (int m = 0; m < M; m++) xv[m] = vload_n(x + m * ldx + i, kc - i);
        UNROLL for (int r = 0; r < MM_GR; r++) {
            vf wv = vload(wb + r * MM_KC + i);
            UNROLL for (int m = 0; m < M; m++) acc[m][r] = vfma(xv[m], wv, acc[m][r]);
        }
    }
    UNROLL for (int m = 0; m < M; m++) put_sums(y + m * ldy, acc[m][0], acc[m][1], acc[m][2], acc[m][3], rvalid, accumulate);
}

/* The x-row remainder of a block (m < MM_MR rows): one narrower tile. */
static void mm_tile_rest(float *y, size_t ldy, const float *x, size_t ldx, const float *wb, int kc, int rvalid,
                         int accumulate, int m) {
    switch (m) {
    case 1: mm_tile(y, ldy, x, ldx, wb, kc, rvalid, accumulate, 1); break;
#if MM_MR > 2
    case 2: mm_tile(y, ldy, x, ldx, wb, kc, rvalid, accumulate, 2); break;
#endif
#if MM_MR > 3
    case 3: mm_tile(y, ldy, x, ldx, wb, kc, rvalid, accumulate, 3); break;
#endif
#if MM_MR > 4
    case 4: mm_tile(y, ldy, x, ldx, wb, kc, rvalid, accumulate, 4); break;
#endif
#if MM_MR > 5
    case 5: mm_tile(y, ldy, x, ldx, wb, kc, rvalid, accumulate, 5); break;
#endif
#if MM_MR > 6
#error "extend mm_tile_rest for MM_MR > 6"
#endif
    default: break;
    }
}

VINLINE void mm_blocked(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0,
                        int o1, const int dt) {
    float wb[MM_GR * MM_KC] __attribute__((aligned(64)));
    size_t ws = (size_t)in * DT_SIZE(dt);
    const char *W = w;
    for (int t0 = 0; t0 < n; t0 += MM_MC) {
        int t1 = n - t0 < MM_MC ? n : t0 + MM_MC;
        for (int k0 = 0; k0 < in; k0 += MM_KC) {
            int kc = in - k0 < MM_KC ? in - k0 : MM_KC;
            for (int o = o0; o < o1; o += MM_GR) {
                int r = o1 - o < MM_GR ? o1 - o : MM_GR;
                const char *next = o + MM_GR + MM_GR <= o1 ? W + (size_t)(o + MM_GR) * ws : NULL;
                mm_pack(wb, W + (size_t)o * ws, ws, k0, kc, r, next, dt);
                const float *xk = x + k0;
                float *yo = y + o;
                int t = t0;
                for (; t + MM_MR <= t1; t += MM_MR)
                    mm_tile(yo + t * ldy, ldy, xk + t * ldx, ldx, wb, kc, r, k0 > 0, MM_MR);
                if (t < t1) mm_tile_rest(yo + t * ldy, ldy, xk + t * ldx, ldx, wb, kc, r, k0 > 0, t1 - t);
            }
        }
    }
}

/* ---- prefill, large n: broadcast micro-kernel on a transposed panel ----
 * A panel is PK_NR = 2*VW rows of W over KC columns, widened and transposed to wp[k][PK_NR] (8x8
 * register transposes, AVX2 instructions in every instantiation). The micro-tile is MMB_MR x rows
 * by PK_NR outputs held in 2*MMB_MR accumulators: per k, two panel loads and MMB_MR broadcasts of
 * x feed 2*MMB_MR FMAs, with no horizontal sums at all, so each output is a plain FMA chain over k
 * (results do not depend on the tiling). x is copied per (MC, KC) block into k-major tiles (a
 * heap buffer of MC*KC floats; 3-5% faster when ldx is a multiple of 4 KiB, as model widths are).
 * The transpose costs more than mm_pack's plain widening, which is why this path starts only at
 * n >= MMB_MIN_N, where each panel is reused by many rows. */
#define PK_NR (2 * VW)
#ifndef MMB_UNROLL
#define MMB_UNROLL
#endif

VINLINE __m256 load8(const int dt, const char *row, size_t k) {
    if (dt == DT_F32) return _mm256_loadu_ps((const float *)row + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    return dt == DT_BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}
VINLINE __m256 load8_n(const int dt, const char *row, size_t k, int cnt) {
    if (dt == DT_F32) {
        __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        return _mm256_maskload_ps((const float *)row + k, m);
    }
    uint16_t tmp[8] = {0};
    memcpy(tmp, (const uint16_t *)row + k, (size_t)cnt * 2);
    return load8(dt, (const char *)tmp, 0);
}

VINLINE void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* wp[k][r] = W[r][k0 + k] for r < rows (zero rows up to PK_NR), k < kc rounded up to 8 (zeros). */
VINLINE void pack_panel(float *wp, const char *w, size_t ws, int k0, int kc, int rows, const int dt) {
    for (int g = 0; g < PK_NR; g += 8)
        for (int kk = 0; kk < kc; kk += 8) {
            __m256 r[8];
            UNROLL for (int j = 0; j < 8; j++) {
                const char *row = w + (size_t)(g + j) * ws;
                r[j] = g + j >= rows ? _mm256_setzero_ps()
                       : kk + 8 <= kc ? load8(dt, row, (size_t)k0 + kk)
                                      : load8_n(dt, row, (size_t)k0 + kk, kc - kk);
            }
            transpose8(r);
            UNROLL for (int j = 0; j < 8; j++) _mm256_storeu_ps(wp + (size_t)(kk + j) * PK_NR + g, r[j]);
        }
}

/* y[m][0..cvalid) (+)= sum_k x[m][k] * wp[k][.], m < M, where x[m][k] is at x[m * xm + k * xk]:
 * xm = ldx, xk = 1 for x read in place, xm = 1, xk = MMB_MR for a packed tile. */
VINLINE void mmb_tile(float *y, size_t ldy, const float *x, size_t xm, size_t xk, const float *wp, int kc,
                      int cvalid, int accumulate, const int M) {
    vf a0[MMB_MR], a1[MMB_MR];
    UNROLL for (int m = 0; m < M; m++) a0[m] = a1[m] = vzero();
    for (int k = 0; k < kc; k++) {
        vf w0 = vload(wp + (size_t)k * PK_NR), w1 = vload(wp + (size_t)k * PK_NR + VW);
        UNROLL for (int m = 0; m < M; m++) {
            vf b = vset1(x[m * xm + k * xk]);
            a0[m] = vfma(b, w0, a0[m]);
            a1[m] = vfma(b, w1, a1[m]);
        }
    }
    UNROLL for (int m = 0; m < M; m++) {
        float *ym = y + m * ldy;
        if (cvalid == PK_NR) {
            if (accumulate) {
                a0[m] = vadd(a0[m], vload(ym));
                a1[m] = vadd(a1[m], vload(ym + VW));
            }
            vstore(ym, a0[m]);
            vstore(ym + VW, a1[m]);
        } else {
            int c0 = cvalid < VW ? cvalid : VW, c1 = cvalid - VW;
            if (accumulate) a0[m] = vadd(a0[m], vload_n(ym, c0));
            vstore_n(ym, a0[m], c0);
            if (c1 > 0) {
                if (accumulate) a1[m] = vadd(a1[m], vload_n(ym + VW, c1));
                vstore_n(ym + VW, a1[m], c1);
            }
        }
    }
}

static void mmb_tile_rest(float *y, size_t ldy, const float *x, size_t xm, size_t xk, const float *wp, int kc,
                          int cvalid, int accumulate, int m) {
    switch (m) {
#define MMB_REST(M) case M: mmb_tile(y, ldy, x, xm, xk, wp, kc, cvalid, accumulate, (M) < MMB_MR ? (M) : 1); break;
    MMB_REST(1) MMB_REST(2) MMB_REST(3) MMB_REST(4) MMB_REST(5) MMB_REST(6) MMB_REST(7)
    MMB_REST(8) MMB_REST(9) MMB_REST(10) MMB_REST(11) MMB_REST(12) MMB_REST(13)
#undef MMB_REST
    default: break;
    }
}

/* Copy x rows [t0,t1) x columns [k0,k0+kc) into tiles of MMB_MR rows, each stored k-major
 * (xp[tile][k][m]), so that the micro-kernel's broadcasts read one sequential stream instead of
 * MMB_MR rows ldx apart (which, for ldx a multiple of 4 KiB, all fall in the same L1 set). */
static void pack_x(float *xp, const float *x, size_t ldx, int t0, int t1, int k0, int kc) {
    for (int t = t0; t < t1; t += MMB_MR) {
        int mr = t1 - t < MMB_MR ? t1 - t : MMB_MR;
        float *d = xp + (size_t)(t - t0) * kc;
        for (int m = 0; m < mr; m++) {
            const float *s = x + (size_t)(t + m) * ldx + k0;
            for (int k = 0; k < kc; k++) d[(size_t)k * MMB_MR + m] = s[k];
        }
    }
}

VINLINE void mmb_blocked(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0,
                         int o1, const int dt) {
    float wp[MMB_KC * PK_NR] __attribute__((aligned(64)));
    /* x tiles of the current (MC, KC) block; without memory the kernel reads x in place */
    float *xp = moe_alloc(sizeof(float) * (size_t)MMB_MC * MMB_KC);
    size_t ws = (size_t)in * DT_SIZE(dt);
    const char *W = w;
    for (int t0 = 0; t0 < n; t0 += MMB_MC) {
        int t1 = n - t0 < MMB_MC ? n : t0 + MMB_MC;
        for (int k0 = 0; k0 < in; k0 += MMB_KC) {
            int kc = in - k0 < MMB_KC ? in - k0 : MMB_KC;
            if (xp) pack_x(xp, x, ldx, t0, t1, k0, kc);
            for (int o = o0; o < o1; o += PK_NR) {
                int rows = o1 - o < PK_NR ? o1 - o : PK_NR;
                pack_panel(wp, W + (size_t)o * ws, ws, k0, kc, rows, dt);
                float *yo = y + o;
                for (int t = t0; t < t1; t += MMB_MR) {
                    const float *xt = xp ? xp + (size_t)(t - t0) * kc : x + t * ldx + k0;
                    size_t xm = xp ? 1 : ldx, xk = xp ? MMB_MR : 1;
                    if (t + MMB_MR <= t1) mmb_tile(yo + t * ldy, ldy, xt, xm, xk, wp, kc, rows, k0 > 0, MMB_MR);
                    else mmb_tile_rest(yo + t * ldy, ldy, xt, xm, xk, wp, kc, rows, k0 > 0, t1 - t);
                }
            }
        }
    }
    moe_free(xp);
}

/* ---- the kernel: pick the path by the number of x rows ---- */
VINLINE void gemm_any(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1,
                      const int dt) {
    if (n <= 0 || o0 >= o1) return;
    if (in <= 0) {
        for (int t = 0; t < n; t++)
            for (int o = o0; o < o1; o++) y[t * ldy + o] = 0;
        return;
    }
    if (n >= MMB_MIN_N) {
        mmb_blocked(y, ldy, x, ldx, n, w, in, o0, o1, dt);
        return;
    }
    if (n >= MM_MIN_N) {
        mm_blocked(y, ldy, x, ldx, n, w, in, o0, o1, dt);
        return;
    }
    /* bf16: permute x once per call when there are enough W rows to amortise it; a small stack
     * buffer covers the common decode sizes, larger ones go to the heap (and on failure the kernel
     * simply takes the plain widening path). */
    float stackbuf[GEMV_STACK_FLOATS] __attribute__((aligned(64)));
    float *xp = NULL;
    size_t ldp = (size_t)(in / (2 * VW)) * 2 * VW;
    if (dt == DT_BF16 && ldp > 0 && o1 - o0 >= 8) {
        size_t need = (size_t)n * ldp;
        xp = need <= GEMV_STACK_FLOATS ? stackbuf : moe_alloc(need * sizeof(float));
        if (xp) permute_pairs(xp, ldp, x, ldx, n, in);
    }
    for (int t = 0; t < n; t += 4) {
        const float *xt = x + t * ldx, *xpt = xp ? xp + t * ldp : NULL;
        float *yt = y + t * ldy;
        switch (n - t) {
        case 1: gemv_rows(yt, ldy, xt, ldx, xpt, ldp, w, in, o0, o1, 1, GEMV1_R, GEMV1_U, dt); break;
        case 2: gemv_rows(yt, ldy, xt, ldx, xpt, ldp, w, in, o0, o1, 2, GEMV2_R, GEMV2_U, dt); break;
        case 3: gemv_rows(yt, ldy, xt, ldx, xpt, ldp, w, in, o0, o1, 3, GEMV3_R, GEMV3_U, dt); break;
        default: gemv_rows(yt, ldy, xt, ldx, xpt, ldp, w, in, o0, o1, 4, GEMV4_R, GEMV4_U, dt); break;
        }
    }
    if (xp && xp != stackbuf) moe_free(xp);
}

/* The kernels, moe_gemm_<type>_<isa>: extern in the library's ISA files (they define MM_LINK empty,
 * and the dtype table points at them), static in a test build of the template. */
#ifndef MM_LINK
#define MM_LINK static
#endif
#define MM_NAME_(a, b) moe_gemm_##a##_##b
#define MM_NAME(a, b) MM_NAME_(a, b)
#define MM_DEFINE(DTNAME, DT)                                                                           \
    MM_LINK void MM_NAME(DTNAME, VEC_ISA)(float *y, size_t ldy, const float *x, size_t ldx, int n,        \
                                          const void *w, int in, int o0, int o1) {                         \
        gemm_any(y, ldy, x, ldx, n, w, in, o0, o1, DT);                                                   \
    }
MM_DEFINE(f32, DT_F32)
MM_DEFINE(bf16, DT_BF16)
MM_DEFINE(f16, DT_F16)
