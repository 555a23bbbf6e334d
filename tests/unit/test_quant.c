/* test_quant.c - quantization formats and kernels.
 *  1. round trip: dequantize(quantize(x)) is close to x (q8_0: within half a step per weight; q4:
 *     small relative RMS error), for row lengths that are and are not multiples of 32;
 *  2. every SIMD kernel this CPU can run against the scalar oracle, and both against a double-precision
 *     product of the dequantized operands, on fresh random data of assorted shapes, including raw
 *     random bytes as weights (q8_0 quants of -128, q4 nibbles of every value);
 *  3. moe_matmul routes quantized dtypes to these kernels, threaded or not, with identical results;
 *  4. the quantized product approximates the f32 product (q8_0 within 2%, q4 within 15%). */
#include "core/alloc.h"
#include "core/matmul.h"
#include "core/dtype_traits.h"
#include "core/quant.h"
#include "moe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static double unif(void) { return ((next() >> 11) + 0.5) / 9007199254740992.0; }
static float gauss(void) { return (float)(sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif())); }

static const moe_dtype k_types[2] = {MOE_Q8_0, MOE_Q4};

static void test_round_trip(void) {
    const int cols[] = {1, 5, 31, 32, 33, 64, 100, 257, 1024};
    for (int ti = 0; ti < 2; ti++)
        for (size_t ci = 0; ci < sizeof cols / sizeof *cols; ci++) {
            int c = cols[ci];
            float *x = malloc(sizeof(float) * c), *y = malloc(sizeof(float) * c);
            unsigned char *q = malloc(moe_quant_row_bytes(k_types[ti], c));
            double se = 0, sx = 0, worst = 0;
            for (int rep = 0; rep < 20; rep++) {
                float scale = (float)pow(10.0, (double)(next() % 7) - 3.0);
                for (int i = 0; i < c; i++) x[i] = scale * gauss() + (ti && rep % 3 == 0 ? scale : 0);
                moe_quantize_row(k_types[ti], x, c, q);
                moe_dequantize_row(k_types[ti], q, c, y);
                for (int b = 0; b < c; b += 32) {
                    /* q8_0: within half of the block's stored step (the step is rounded up, never clamped) */
                    float step = moe_f16_to_f32((uint16_t)(q[2 * (b / 32)] | q[2 * (b / 32) + 1] << 8));
                    for (int i = b; i < c && i < b + 32; i++) {
                        double e = fabs((double)x[i] - y[i]);
                        if (k_types[ti] == MOE_Q8_0) worst = fmax(worst, e / (step * 0.5 * 1.0001 + 1e-30));
                        se += e * e / ((double)scale * scale);
                        sx += (double)x[i] * x[i] / ((double)scale * scale);
                    }
                }
            }
            double rel = sqrt(se / sx);
            if (k_types[ti] == MOE_Q8_0) CHECK(worst <= 1.0, "q8_0 cols %d: error %.3f half-steps", c, worst);
            CHECK(rel < (k_types[ti] == MOE_Q8_0 ? 0.01 : 0.12), "%s cols %d: relative RMS error %.4f",
                  moe_dtype_name(k_types[ti]), c, rel);
            free(x); free(y); free(q);
        }
}

/* Quantized W [out][in] from Gaussian floats, or raw random bytes with sane f16 scales. */
static unsigned char *make_w(moe_dtype t, int out, int in, int raw, float *wf) {
    size_t rb = moe_quant_row_bytes(t, in);
    unsigned char *w = moe_alloc(rb * out);
    int nb = (int)moe_quant_blocks(in);
    for (int o = 0; o < out; o++) {
        unsigned char *row = w + (size_t)o * rb;
        if (raw) {
            for (size_t i = 0; i < rb; i++) row[i] = (unsigned char)next();
            int n_f16 = t == MOE_Q8_0 ? nb : 2 * nb;
            for (int b = 0; b < n_f16; b++) {
                uint16_t h = moe_f32_to_f16((float)((unif() - 0.5) * 0.02));
                row[2 * b] = (unsigned char)h;
                row[2 * b + 1] = (unsigned char)(h >> 8);
            }
        } else {
            for (int i = 0; i < in; i++) wf[(size_t)o * in + i] = gauss() / sqrtf((float)in);
            moe_quantize_row(t, wf + (size_t)o * in, in, row);
        }
    }
    return w;
}

static void test_kernels(void) {
    const int ins[] = {32, 48, 64, 96, 256, 264, 1000};
    const int outs[] = {1, 7, 33};
    const int ns[] = {1, 2, 5};
    moe_simd levels[3] = {MOE_SIMD_SCALAR, MOE_SIMD_AVX2, MOE_SIMD_AVX512};
    int tested[3] = {0};
    for (int ti = 0; ti < 2; ti++)
        for (size_t ii = 0; ii < sizeof ins / sizeof *ins; ii++)
            for (size_t oi = 0; oi < 3; oi++)
                for (size_t ni = 0; ni < 3; ni++)
                    for (int raw = 0; raw < 2; raw++) {
                        moe_dtype t = k_types[ti];
                        int in = ins[ii], out = outs[oi], n = ns[ni], nb = (int)moe_quant_blocks(in);
                        float *wf = malloc(sizeof(float) * in * out), *x = malloc(sizeof(float) * in * n);
                        unsigned char *w = make_w(t, out, in, raw, wf);
                        for (int i = 0; i < in * n; i++) x[i] = gauss() * (i % 17 == 0 ? 5.0f : 1.0f);
                        int8_t *q = malloc((size_t)n * nb * 32);
                        float *d = malloc(sizeof(float) * n * nb), *s = malloc(sizeof(float) * n * nb);
                        for (int r = 0; r < n; r++)
                            moe_quantize_act_row(x + (size_t)r * in, in, nb, q + (size_t)r * nb * 32, d + (size_t)r * nb,
                                                 s + (size_t)r * nb);
                        moe_qact a = {nb, q, d, s};
                        /* double reference over the dequantized operands, and its absolute sum */
                        double *ref = calloc((size_t)n * out, sizeof(double)), *mag = calloc((size_t)n * out, sizeof(double));
                        float *wd = malloc(sizeof(float) * in);
                        size_t rb = moe_quant_row_bytes(t, in);
                        for (int o = 0; o < out; o++) {
                            moe_dequantize_row(t, w + (size_t)o * rb, in, wd);
                            for (int r = 0; r < n; r++)
                                for (int i = 0; i < in; i++) {
                                    double xv = (double)d[r * nb + i / 32] * q[(size_t)r * nb * 32 + i];
                                    ref[r * out + o] += wd[i] * xv;
                                    mag[r * out + o] += fabs(wd[i] * xv);
                                }
                        }
                        float *y[3];
                        for (int l = 0; l < 3; l++) {
                            y[l] = malloc(sizeof(float) * n * out);
                            int runnable = l == 0 || (l == 1 && moe_simd_detect() >= MOE_SIMD_AVX2) ||
                                           (l == 2 && moe_simd_detect() >= MOE_SIMD_AVX512 && moe_cpu_has_avx512_vnni());
                            if (!runnable) { free(y[l]); y[l] = NULL; continue; }
                            moe_qgemm_kernel k = moe_dtype_traits_of(t)->qgemm[levels[l]];
                            /* compute in two column ranges to exercise o0 > 0 */
                            int mid = out / 2;
                            k(y[l], out, &a, n, w, rb, 0, mid);
                            k(y[l], out, &a, n, w, rb, mid, out);
                            tested[l] = 1;
                            for (int i = 0; i < n * out; i++) {
                                double err = fabs(y[l][i] - ref[i]), tol = 2e-6 * mag[i] + 1e-12;
                                if (!(err <= tol)) {
                                    CHECK(0, "%s level %d in %d out %d n %d raw %d: y[%d] = %.9g, reference %.9g (tol %.3g)",
                                          moe_dtype_name(t), l, in, out, n, raw, i, y[l][i], ref[i], tol);
                                    break;
                                }
                            }
                        }
                        for (int l = 0; l < 3; l++) free(y[l]);
                        free(ref); free(mag); free(wd); free(q); free(d); free(s); free(x); free(wf);
                        moe_free(w);
                    }
    CHECK(tested[0] && tested[1] == (moe_simd_detect() >= MOE_SIMD_AVX2), "kernel levels not tested");
    printf("kernels tested: scalar %d, avx2 %d, avx512-vnni %d\n", tested[0], tested[1], tested[2]);
}

static void test_matmul_hook(void) {
    const int in = 512, out = 384, n = 3;
    for (int ti = 0; ti < 2; ti++) {
        moe_dtype t = k_types[ti];
        float *wf = malloc(sizeof(float) * in * out), *x = malloc(sizeof(float) * in * n);
        unsigned char *w = make_w(t, out, in, 0, wf);
        for (int i = 0; i < in * n; i++) x[i] = gauss();
        float *y1 = malloc(sizeof(float) * n * out), *y2 = malloc(sizeof(float) * n * out), *yf = malloc(sizeof(float) * n * out);
        moe_set_threads(1);
        moe_matmul(y1, x, n, t, w, out, in);
        moe_set_threads(4);
        moe_matmul(y2, x, n, t, w, out, in);
        moe_set_threads(0);
        CHECK(!memcmp(y1, y2, sizeof(float) * n * out), "%s: threaded moe_matmul differs from one thread", moe_dtype_name(t));
        moe_matmul(yf, x, n, MOE_F32, wf, out, in);
        double se = 0, sf = 0;
        for (int i = 0; i < n * out; i++) { se += (y1[i] - yf[i]) * (double)(y1[i] - yf[i]); sf += (double)yf[i] * yf[i]; }
        double rel = sqrt(se / sf);
        CHECK(rel < (t == MOE_Q8_0 ? 0.02 : 0.15), "%s: relative error against f32 %.4f", moe_dtype_name(t), rel);
        printf("%s: relative RMS error of the product against f32: %.4f\n", moe_dtype_name(t), rel);
        /* a zero activation row gives exact zeros, not NaN */
        memset(x, 0, sizeof(float) * in);
        moe_matmul(y1, x, 1, t, w, out, in);
        int zero = 1;
        for (int i = 0; i < out; i++) zero &= t == MOE_Q8_0 ? y1[i] == 0.0f : isfinite(y1[i]);
        CHECK(zero, "%s: zero input gave non-zero or non-finite output", moe_dtype_name(t));
        free(wf); free(x); free(y1); free(y2); free(yf);
        moe_free(w);
    }
}

int main(void) {
    test_round_trip();
    test_kernels();
    test_matmul_hook();
    if (fails) { printf("%d failures\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
