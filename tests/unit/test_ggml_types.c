/* test_ggml_types.c - llama.cpp's block formats (core/ggml_types.h) and their kernels.
 *  1. Prefill (n >= 8) at every SIMD level the CPU runs is bit for bit the f32 kernel of that level
 *     on the scalar converter's output: the SIMD dequantizers are exact, on raw random blocks (every
 *     nibble and byte value, random finite f16 scales including subnormal and negative ones).
 *  2. The scalar kernel is bit for bit the scalar f32 kernel on the converted rows.
 *  3. Decode (n < 8) at every level against a double-precision product of the converted rows,
 *     within 1e-5 * sum |x w| (the summation order differs), on ragged row ranges [o0, o1), with
 *     y untouched outside them.
 *  4. moe_matmul with 1 and 2 threads gives identical bits, decode and prefill.
 *  5. Known values: hand-built blocks of each format decode to the values the format defines.
 * The bit-exactness of the converters against the gguf package's numpy dequantizer is
 * tests/hf/test_gguf.py's. */
#include "core/dtype_traits.h"
#include "core/ggml_types.h"
#include "moe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "unit/testrand.h"

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

static const moe_dtype k_types[] = {MOE_GGML_Q8_0, MOE_GGML_Q4_0, MOE_Q4_1, MOE_Q5_0, MOE_Q5_1,
                                    MOE_Q4_K, MOE_Q5_K, MOE_Q6_K, MOE_MXFP4, MOE_F8_E4M3_B128};
#define NTYPES (int)(sizeof k_types / sizeof *k_types)

static void put_f16(uint8_t *p, float v) { uint16_t h = moe_f32_to_f16(v); p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }
static float rscale(void) {
    float v = ldexpf(1.0f + (float)(rnd() % 1024) / 1024.0f, rint_(-26, -4));   /* down into f16 subnormals */
    return rnd() % 4 == 0 ? -v : v;
}

/* raw random blocks with finite scales */
static void raw_row(moe_dtype t, uint8_t *row, int cols) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    int nb = cols / tr->block, bb = tr->block_bytes;
    for (int i = 0; i < nb * bb; i++) row[i] = (uint8_t)rnd();
    for (int b = 0; b < nb; b++) {
        uint8_t *p = row + (size_t)b * bb;
        switch (t) {
        case MOE_Q6_K: put_f16(p + 208, rscale()); break;
        case MOE_MXFP4: p[0] = (uint8_t)rint_(100, 140); break;
        case MOE_F8_E4M3_B128: {   /* a finite f32 scale; no NaN codes (0x7f, 0xff) */
            float sc = rscale() * 4096.0f;
            memcpy(p, &sc, 4);
            for (int j = 4; j < bb; j++) if ((p[j] & 0x7f) == 0x7f) p[j] ^= 1;
            break;
        }
        case MOE_Q4_1: case MOE_Q5_1: case MOE_Q4_K: case MOE_Q5_K: put_f16(p, rscale()); put_f16(p + 2, rscale()); break;
        default: put_f16(p, rscale()); break;
        }
    }
}

static uint8_t *make_matrix(moe_dtype t, int out, int in, int raw, float *wd) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    size_t rb = moe_dtype_row_bytes(t, in);
    uint8_t *w = malloc(rb * (size_t)out + 1);
    float *tmp = malloc(sizeof(float) * (size_t)in);
    for (int o = 0; o < out; o++) {
        if (raw) raw_row(t, w + (size_t)o * rb, in);
        else {
            for (int i = 0; i < in; i++) tmp[i] = rfloat() * 0.1f;
            tr->quantize(tmp, in, w + (size_t)o * rb);
        }
        tr->to_f32(w + (size_t)o * rb, in, wd + (size_t)o * in);
    }
    free(tmp);
    return w;
}

static void check_prefill_exact(moe_dtype t, int n, int in, int out, int raw) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    float *wd = malloc(sizeof(float) * (size_t)in * out), *x = malloc(sizeof(float) * (size_t)n * in);
    float *y = malloc(sizeof(float) * (size_t)n * out), *yr = malloc(sizeof(float) * (size_t)n * out);
    uint8_t *w = make_matrix(t, out, in, raw, wd);
    for (int i = 0; i < n * in; i++) x[i] = rfloat();
    for (int lvl = MOE_SIMD_SCALAR; lvl <= (int)moe_simd_detect(); lvl++) {
        moe_gemm_kernel k = tr->gemm[lvl], f = moe_dtype_traits_of(MOE_F32)->gemm[lvl];
        if (!k || (lvl == MOE_SIMD_SCALAR && n < 8)) continue;
        if (lvl > MOE_SIMD_SCALAR && n < 8) continue;
        k(y, (size_t)out, x, (size_t)in, n, w, in, 0, out);
        f(yr, (size_t)out, x, (size_t)in, n, wd, in, 0, out);
        CHECK(!memcmp(y, yr, sizeof(float) * (size_t)n * out), "%s level %d n %d in %d out %d raw %d: not bit for bit the f32 kernel "
              "on the converted rows", tr->name, lvl, n, in, out, raw);
    }
    /* the scalar kernel is the scalar f32 kernel on the converted rows, for any n */
    tr->gemm[MOE_SIMD_SCALAR](y, (size_t)out, x, (size_t)in, n, w, in, 0, out);
    moe_gemm_f32_scalar(yr, (size_t)out, x, (size_t)in, n, wd, in, 0, out);
    CHECK(!memcmp(y, yr, sizeof(float) * (size_t)n * out), "%s scalar n %d in %d: differs from f32 scalar", tr->name, n, in);
    free(wd); free(x); free(y); free(yr); free(w);
}

#define SENTINEL 777.0f
static void check_decode(moe_dtype t, int n, int in, int out, int raw) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    float *wd = malloc(sizeof(float) * (size_t)in * out), *x = malloc(sizeof(float) * (size_t)n * in);
    float *y = malloc(sizeof(float) * (size_t)n * out);
    uint8_t *w = make_matrix(t, out, in, raw, wd);
    for (int i = 0; i < n * in; i++) x[i] = rfloat();
    int o0 = rint_(0, out - 1), o1 = rint_(o0 + 1, out);
    for (int lvl = MOE_SIMD_SCALAR; lvl <= (int)moe_simd_detect(); lvl++) {
        moe_gemm_kernel k = tr->gemm[lvl];
        if (!k) continue;
        for (int i = 0; i < n * out; i++) y[i] = SENTINEL;
        k(y, (size_t)out, x, (size_t)in, n, w, in, o0, o1);
        int bad = 0;
        for (int r = 0; r < n && !bad; r++)
            for (int o = 0; o < out && !bad; o++) {
                float got = y[(size_t)r * out + o];
                if (o < o0 || o >= o1) {
                    if (got != SENTINEL) { CHECK(0, "%s level %d: wrote y[%d][%d] outside [%d,%d)", tr->name, lvl, r, o, o0, o1); bad = 1; }
                    continue;
                }
                double ref = 0, mag = 0;
                for (int i = 0; i < in; i++) {
                    double p = (double)x[(size_t)r * in + i] * wd[(size_t)o * in + i];
                    ref += p;
                    mag += fabs(p);
                }
                if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30)) {
                    CHECK(0, "%s level %d n %d in %d raw %d: y[%d][%d] = %.9g, reference %.9g", tr->name, lvl, n, in, raw, r, o, got, ref);
                    bad = 1;
                }
            }
    }
    free(wd); free(x); free(y); free(w);
}

static void check_threads(moe_dtype t) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    const int shapes[][3] = {{1, 2048, 700}, {3, 1024, 300}, {40, 512, 333}};
    for (int s = 0; s < 3; s++) {
        int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *wd = malloc(sizeof(float) * (size_t)in * out), *x = malloc(sizeof(float) * (size_t)n * in);
        float *y1 = malloc(sizeof(float) * (size_t)n * out), *y2 = malloc(sizeof(float) * (size_t)n * out);
        uint8_t *w = make_matrix(t, out, in, 0, wd);
        for (int i = 0; i < n * in; i++) x[i] = rfloat();
        moe_set_threads(1);
        moe_matmul(y1, x, n, t, w, out, in);
        moe_set_threads(2);
        moe_matmul(y2, x, n, t, w, out, in);
        CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)n * out), "%s n %d: 1 and 2 threads differ", tr->name, n);
        free(wd); free(x); free(y1); free(y2); free(w);
    }
    moe_set_threads(0);
}

/* Hand-built blocks with known values. */
static void check_known(void) {
    float out[256];
    uint8_t b[256];
    /* q8_0: d = 0.5, q = j - 16 */
    memset(b, 0, sizeof b);
    put_f16(b, 0.5f);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    moe_ggml_q8_0_to_f32(b, 32, out);
    for (int j = 0; j < 32; j++) CHECK(out[j] == 0.5f * (float)(j - 16), "q8_0 known value %d: %g", j, out[j]);
    /* q4_0: element j < 16 low nibble of byte j, j >= 16 high nibble of byte j - 16; w = d (q - 8) */
    memset(b, 0, sizeof b);
    put_f16(b, 2.0f);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    moe_ggml_q4_0_to_f32(b, 32, out);
    for (int j = 0; j < 32; j++) CHECK(out[j] == 2.0f * (float)((j < 16 ? j : 31 - j) - 8), "q4_0 known value %d: %g", j, out[j]);
    /* q5_0: high bit j of the u32 adds 16; w = d (q - 16) */
    memset(b, 0, sizeof b);
    put_f16(b, 1.0f);
    b[2] = 0x01; b[5] = 0x80;   /* bits 0 and 31 */
    for (int j = 0; j < 16; j++) b[6 + j] = 0x33;
    moe_q5_0_to_f32(b, 32, out);
    CHECK(out[0] == 3.0f && out[1] == -13.0f && out[31] == 3.0f && out[16] == -13.0f, "q5_0 known values %g %g %g %g", out[0], out[1], out[31], out[16]);
    /* q4_k: d = 1, dmin = 0.5, sub-block 0 scale 2 min 4, sub-block 5 scale 17 (= 1 | 1 << 4) min 35 */
    memset(b, 0, sizeof b);
    put_f16(b, 1.0f); put_f16(b + 2, 0.5f);
    b[4 + 0] = 2; b[4 + 4] = 4;                   /* s = 0 */
    b[4 + 9] = (uint8_t)(1 | 3 << 4);             /* s = 5: low 4 bits of scale 1, of min 3 */
    b[4 + 1] |= 1 << 6; b[4 + 5] |= 2 << 6;       /* s = 5: high bits of scale (1) and min (2) */
    for (int l = 0; l < 32; l++) { b[16 + l] = 7; b[16 + 64 + l] = 9 << 4; }
    moe_q4_k_to_f32(b, 256, out);
    CHECK(out[0] == 2.0f * 7 - 0.5f * 4, "q4_k sub-block 0: %g", out[0]);
    CHECK(out[5 * 32 + 3] == 17.0f * 9 - 0.5f * 35, "q4_k sub-block 5: %g", out[5 * 32 + 3]);
    /* q6_k: d = 0.25, scale of elements 64..79 = -3, element 64 = low nibble of byte 0's high half... */
    memset(b, 0, sizeof b);
    put_f16(b + 208, 0.25f);
    ((int8_t *)(b + 192))[4] = -3;
    b[0] = 0x50;            /* element 64: high nibble of ql[0] = 5 */
    b[128] = 0x20;          /* element 64: bits 4-5 of qh[0] = 2 -> q = 5 | 32 = 37 */
    moe_q6_k_to_f32(b, 256, out);
    CHECK(out[64] == 0.25f * -3 * (37 - 32), "q6_k element 64: %g", out[64]);
    CHECK(out[0] == 0.0f * 1, "q6_k element 0 (scale 0): %g", out[0]);
    /* mxfp4: e = 128 gives d = 1; value index 7 = 12 (doubled 6), index 9 = -1 */
    memset(b, 0, sizeof b);
    b[0] = 128;
    b[1] = 7 | 9 << 4;
    moe_mxfp4_to_f32(b, 32, out);
    CHECK(out[0] == 12.0f && out[16] == -1.0f && out[1] == 0.0f, "mxfp4 known values %g %g %g", out[0], out[16], out[1]);
    /* e4m3: 0x38 = 1, 0x7e = 448 (largest), 0x08 = 2^-6 (smallest normal), 0x01 = 2^-9, 0xc0 = -2, 0x7f NaN;
     * and f32 -> e4m3 gives back every finite code, rounds half-way values to the even code, saturates */
    CHECK(moe_e4m3_to_f32(0x38) == 1.0f && moe_e4m3_to_f32(0x7e) == 448.0f && moe_e4m3_to_f32(0x08) == 0x1p-6f &&
          moe_e4m3_to_f32(0x01) == 0x1p-9f && moe_e4m3_to_f32(0xc0) == -2.0f && isnan(moe_e4m3_to_f32(0x7f)),
          "e4m3 known values");
    for (int c = 0; c < 256; c++)
        if ((c & 0x7f) != 0x7f && c != 0x80) CHECK(moe_f32_to_e4m3(moe_e4m3_to_f32((uint8_t)c)) == c, "e4m3 code %#x does not round-trip", c);
    CHECK(moe_f32_to_e4m3(1.0625f) == 0x38 && moe_f32_to_e4m3(1.1875f) == 0x3a && moe_f32_to_e4m3(1000.0f) == 0x7e &&
          moe_f32_to_e4m3(-1000.0f) == 0xfe, "e4m3 rounding");
}

int main(void) {
    const char *env = getenv("MOE_TEST_SEED");
    uint64_t fresh = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    printf("fresh seed %llu (MOE_TEST_SEED=N replays it); SIMD detected %d\n", (unsigned long long)fresh, (int)moe_simd_detect());
    check_known();
    const uint64_t seeds[] = {3, fresh};
    for (size_t s = 0; s < 2; s++) {
        g_rng = seeds[s];
        int before = fails;
        for (int ti = 0; ti < NTYPES; ti++) {
            moe_dtype t = k_types[ti];
            int blk = moe_dtype_block(t);
            for (int raw = 0; raw < 2; raw++) {
                const int ns[] = {8, 9, 31, 32, 37};
                for (size_t a = 0; a < 5; a++) check_prefill_exact(t, ns[a], blk * rint_(1, 5), rint_(1, 60), raw);
                check_prefill_exact(t, 64, blk * (1024 / blk), 130, raw);
                for (int n = 1; n <= 7; n++) check_decode(t, n, blk * rint_(1, 6), rint_(1, 40), raw);
                check_decode(t, 1, blk * (4096 / blk), 37, raw);
            }
            if (s == 0) check_threads(t);
        }
        if (fails > before) printf("  (seed %llu)\n", (unsigned long long)seeds[s]);
    }
    if (fails) { printf("%d failures\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
