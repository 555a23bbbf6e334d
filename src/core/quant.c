/* quant.c - quantization formats, the scalar product kernels (the oracles of quant_avx2.c and
 * quant_avx512.c) and the dispatch moe_matmul uses for quantized dtypes. See quant.h for the formats.
 *
 * q4 is fitted per block, k-quant style: start from the block's min and max, then alternate between
 * assigning each weight its nearest level and solving the 2x2 least-squares problem for (d, m) given
 * the levels. Three rounds cut the block's squared error by roughly a third against plain min/max on
 * Gaussian weights, at no cost to the format or the kernels. */
#include "core/quant.h"
#include "core/alloc.h"
#include "core/dtype_traits.h"
#include <math.h>
#include <omp.h>
#include <string.h>

size_t moe_quant_row_bytes(moe_dtype t, int64_t cols) {
    return moe_dtype_is_quant(t) ? moe_dtype_row_bytes(t, cols) : 0;
}

int moe_quant_type_from_name(const char *s) {
    int t = moe_dtype_from_name(s);
    return t >= 0 && moe_dtype_is_quant((moe_dtype)t) && moe_dtype_traits_of((moe_dtype)t)->quantize ? t : -1;
}

static inline uint16_t load_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void store_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline float f16_at(const unsigned char *p, int64_t i) { return moe_f16_to_f32(load_u16(p + 2 * i)); }

/* Round and clamp to [lo, hi]; NaN gives lo (defined behaviour for any input). */
static inline int clamp_round(float v, int lo, int hi) {
    float r = rintf(v);
    if (r >= (float)hi) return hi;
    if (r >= (float)lo) return (int)r;
    return lo;
}

/* f16 holds values up to 65504; clamp so a wild weight cannot turn a scale into inf. */
static float to_f16_clamped(float v, uint16_t *h) {
    if (v > 65504.0f) v = 65504.0f;
    if (v < -65504.0f) v = -65504.0f;
    *h = moe_f32_to_f16(v);
    return moe_f16_to_f32(*h);
}

/* The block's 32 values, zero-padded past `cols`; returns how many are real. */
static int block_values(const float *x, int64_t cols, int64_t b, float v[32]) {
    int64_t c0 = b * 32;
    int real = (int)(cols - c0 < 32 ? cols - c0 : 32);
    for (int j = 0; j < 32; j++) v[j] = j < real ? x[c0 + j] : 0.0f;
    return real;
}

void moe_q8_0_quantize_row(const float *x, int64_t cols, void *row) {
    unsigned char *out = row;
    int64_t nb = moe_quant_blocks(cols);
    int8_t *q = (int8_t *)(out + 2 * nb);
    for (int64_t b = 0; b < nb; b++) {
        float v[32], amax = 0;
        block_values(x, cols, b, v);
        for (int j = 0; j < 32; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
        uint16_t h;
        float want = amax / 127.0f, d = to_f16_clamped(want, &h);
        if (d < want && h < 0x7bff) d = moe_f16_to_f32(++h); /* round the scale up: no quant needs clamping */
        store_u16(out + 2 * b, h);
        for (int j = 0; j < 32; j++) {
            q[b * 32 + j] = (int8_t)(d > 0 ? clamp_round(v[j] / d, -127, 127) : 0);
        }
    }
}

/* Levels of a block for scale d and minimum m. */
static void q4_levels(const float *v, int real, float d, float m, int *lv) {
    for (int j = 0; j < real; j++) lv[j] = d > 0 ? clamp_round((v[j] - m) / d, 0, 15) : 0;
}

static double q4_error(const float *v, int real, float d, float m, const int *lv) {
    double e = 0;
    for (int j = 0; j < real; j++) { double r = v[j] - (d * lv[j] + m); e += r * r; }
    return e;
}

void moe_q4_quantize_row(const float *x, int64_t cols, void *row) {
    unsigned char *out = row;
    int64_t nb = moe_quant_blocks(cols);
    unsigned char *qs = out + 4 * nb;
    for (int64_t b = 0; b < nb; b++) {
        float v[32];
        int real = block_values(x, cols, b, v);
        float lo = v[0], hi = v[0];
        for (int j = 1; j < real; j++) { lo = v[j] < lo ? v[j] : lo; hi = v[j] > hi ? v[j] : hi; }
        uint16_t hd, hm;
        float d = to_f16_clamped((hi - lo) / 15.0f, &hd), m = to_f16_clamped(lo, &hm);
        int lv[32] = {0}, best_lv[32];
        q4_levels(v, real, d, m, lv);
        double best = q4_error(v, real, d, m, lv);
        memcpy(best_lv, lv, sizeof lv);
        uint16_t best_hd = hd, best_hm = hm;
        for (int it = 0; it < 3 && d > 0; it++) {
            /* least squares for (d, m) given the levels */
            double sl = 0, sll = 0, sv = 0, slv = 0;
            for (int j = 0; j < real; j++) { sl += lv[j]; sll += (double)lv[j] * lv[j]; sv += v[j]; slv += lv[j] * (double)v[j]; }
            double det = real * sll - sl * sl;
            if (det <= 0) break;
            d = to_f16_clamped((float)((real * slv - sl * sv) / det), &hd);
            m = to_f16_clamped((float)((sv - (real * slv - sl * sv) / det * sl) / real), &hm);
            if (!(d > 0)) break;
            q4_levels(v, real, d, m, lv);
            double e = q4_error(v, real, d, m, lv);
            if (e < best) { best = e; memcpy(best_lv, lv, sizeof lv); best_hd = hd; best_hm = hm; }
        }
        store_u16(out + 2 * b, best_hd);
        store_u16(out + 2 * nb + 2 * b, best_hm);
        for (int j = real; j < 32; j++) best_lv[j] = 0;
        for (int j = 0; j < 16; j++) qs[b * 16 + j] = (unsigned char)(best_lv[j] | best_lv[j + 16] << 4);
    }
}

void moe_q8_0_dequantize_row(const void *row, int64_t cols, float *out) {
    const unsigned char *p = row;
    int64_t nb = moe_quant_blocks(cols);
    for (int64_t c = 0; c < cols; c++) out[c] = f16_at(p, c / 32) * (float)((const int8_t *)(p + 2 * nb))[c];
}

void moe_q4_dequantize_row(const void *row, int64_t cols, float *out) {
    const unsigned char *p = row;
    int64_t nb = moe_quant_blocks(cols);
    for (int64_t c = 0; c < cols; c++) {
        int64_t b = c / 32;
        int j = (int)(c % 32);
        unsigned char byte = p[4 * nb + b * 16 + (j & 15)];
        int q = j < 16 ? byte & 15 : byte >> 4;
        out[c] = f16_at(p, b) * (float)q + f16_at(p + 2 * nb, b);
    }
}

void moe_quantize_row(moe_dtype t, const float *x, int64_t cols, void *out) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    if (tr->quantize) tr->quantize(x, cols, out);
}

void moe_dequantize_row(moe_dtype t, const void *row, int64_t cols, float *out) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    if (tr->to_f32) tr->to_f32(row, cols, out);
}

void moe_quantize_act_row(const float *x, int cols, int nb, int8_t *q, float *d, float *s) {
    for (int b = 0; b < nb; b++) {
        float v[32], amax = 0;
        block_values(x, cols, b, v);
        for (int j = 0; j < 32; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
        float db = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int qi = clamp_round(v[j] * inv, -127, 127);
            q[b * 32 + j] = (int8_t)qi;
            sum += qi;
        }
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

/* ---- scalar kernels: the oracles ------------------------------------------------------------ */

void moe_qgemm_q8_0_scalar(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, int o0,
                           int o1) {
    int nb = x->nb;
    for (int t = 0; t < n; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * 32;
        const float *xd = x->d + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const unsigned char *row = (const unsigned char *)w + (size_t)o * row_bytes;
            const int8_t *wq = (const int8_t *)(row + 2 * nb);
            float acc = 0;
            for (int b = 0; b < nb; b++) {
                int isum = 0;
                for (int j = 0; j < 32; j++) isum += wq[b * 32 + j] * xq[b * 32 + j];
                acc += (float)isum * (f16_at(row, b) * xd[b]);
            }
            y[t * ldy + o] = acc;
        }
    }
}

void moe_qgemm_q4_scalar(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, int o0,
                         int o1) {
    int nb = x->nb;
    for (int t = 0; t < n; t++) {
        const int8_t *xq = x->q + (size_t)t * nb * 32;
        const float *xd = x->d + (size_t)t * nb, *xs = x->s + (size_t)t * nb;
        for (int o = o0; o < o1; o++) {
            const unsigned char *row = (const unsigned char *)w + (size_t)o * row_bytes;
            const unsigned char *qs = row + 4 * nb;
            float acc = 0;
            for (int b = 0; b < nb; b++) {
                int isum = 0;
                for (int j = 0; j < 16; j++) {
                    isum += (qs[b * 16 + j] & 15) * xq[b * 32 + j];
                    isum += (qs[b * 16 + j] >> 4) * xq[b * 32 + j + 16];
                }
                acc += (float)isum * (f16_at(row, b) * xd[b]) + f16_at(row + 2 * nb, b) * xs[b];
            }
            y[t * ldy + o] = acc;
        }
    }
}

void moe_qmatmul_ld(float *y, size_t ldy, const float *x, size_t ldx, int n, moe_dtype dt, const void *w, int out,
                    int in) {
    if (n <= 0 || out <= 0 || in <= 0) return;
    moe_qgemm_kernel k = moe_dtype_qgemm(dt, moe_simd_level());
    if (!k) return;
    int nb = (int)moe_quant_blocks(in);
    int8_t *q = moe_alloc((size_t)n * nb * 32);
    float *d = moe_alloc((size_t)n * nb * 4), *s = moe_alloc((size_t)n * nb * 4);
    if (!q || !d || !s) { /* cannot happen for sane sizes; leave y as NaN rather than crash */
        for (int t = 0; t < n; t++) for (int o = 0; o < out; o++) y[t * ldy + o] = NAN;
        moe_free(q); moe_free(d); moe_free(s);
        return;
    }
    for (int t = 0; t < n; t++)
        moe_quantize_act_row(x + t * ldx, in, nb, q + (size_t)t * nb * 32, d + (size_t)t * nb, s + (size_t)t * nb);
    moe_qact a = {nb, q, d, s};
    size_t rb = moe_quant_row_bytes(dt, in);
    double work = (double)n * out * in;
    int nth = omp_in_parallel() || work < 65536 ? 1 : omp_get_max_threads();
    if (nth <= 1) {
        k(y, ldy, &a, n, w, rb, 0, out);
    } else {
        int blocks = (out + 15) / 16;
        #pragma omp parallel num_threads(nth)
        {
            int id = omp_get_thread_num(), nt = omp_get_num_threads();
            int b0 = (int)((long)blocks * id / nt), b1 = (int)((long)blocks * (id + 1) / nt);
            int o0 = b0 * 16, o1 = b1 * 16 < out ? b1 * 16 : out;
            if (o0 < o1) k(y, ldy, &a, n, w, rb, o0, o1);
        }
    }
    moe_free(q); moe_free(d); moe_free(s);
}

/* moe_gemm_kernel adapters: quantize x here, on this thread (a small stack buffer covers decode). */
static void qgemm_adapter(moe_dtype dt, float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in,
                          int o0, int o1) {
    int nb = (int)moe_quant_blocks(in);
    size_t nq = (size_t)n * nb * 32, nf = (size_t)n * nb;
    _Alignas(64) unsigned char stack[8192];
    size_t need = nq + 8 * nf + 8;
    unsigned char *buf = need <= sizeof stack ? stack : moe_alloc(need);
    if (!buf) {
        for (int t = 0; t < n; t++) for (int o = o0; o < o1; o++) y[t * ldy + o] = NAN;
        return;
    }
    int8_t *q = (int8_t *)buf;
    float *d = (float *)(buf + (nq + 3) / 4 * 4), *s = d + nf;
    for (int t = 0; t < n; t++)
        moe_quantize_act_row(x + t * ldx, in, nb, q + (size_t)t * nb * 32, d + (size_t)t * nb, s + (size_t)t * nb);
    moe_qact a = {nb, q, d, s};
    moe_dtype_qgemm(dt, moe_simd_level())(y, ldy, &a, n, w, moe_quant_row_bytes(dt, in), o0, o1);
    if (buf != stack) moe_free(buf);
}

void moe_qgemm_adapt_q8_0(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1) {
    qgemm_adapter(MOE_Q8_0, y, ldy, x, ldx, n, w, in, o0, o1);
}
void moe_qgemm_adapt_q4(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1) {
    qgemm_adapter(MOE_Q4, y, ldy, x, ldx, n, w, in, o0, o1);
}
