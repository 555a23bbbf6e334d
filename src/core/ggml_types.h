/* ggml_types.h - the block formats of llama.cpp's GGUF files, kept in their own layout in memory.
 *
 * A row of `cols` weights is cols / block blocks laid end to end (ggml requires whole blocks), each
 * block carrying its own scales (f16 unless said otherwise, little-endian):
 *   ggml_q8_0  32 weights, 34 bytes:  d, int8 q[32]                               w = d * q
 *   ggml_q4_0  32 weights, 18 bytes:  d, 16 bytes of nibbles (element j < 16 in the low nibble of
 *              byte j, element j >= 16 in the high nibble of byte j - 16)       w = d * (q - 8)
 *   q4_1       32 weights, 20 bytes:  d, m, nibbles as q4_0                      w = d * q + m
 *   q5_0       32 weights, 22 bytes:  d, u32 high bits (bit j = bit 4 of element j), nibbles as q4_0
 *                                                                               w = d * (q - 16)
 *   q5_1       32 weights, 24 bytes:  d, m, high bits, nibbles                   w = d * q + m
 *   q4_k      256 weights, 144 bytes: d, dmin, 12 bytes of eight 6-bit scales sc and mins m, 128 bytes
 *              of nibbles: bytes 32c..32c+31 hold sub-block 2c (low nibbles) and 2c+1 (high)
 *                                                      w = (d * sc_s) * q - (dmin * m_s), s = j / 32
 *   q5_k      256 weights, 176 bytes: d, dmin, scales as q4_k, 32 bytes of high bits (bit s of byte
 *              l is bit 4 of element l of sub-block s), nibbles as q4_k               as q4_k
 *   q6_k      256 weights, 210 bytes: 128 bytes of low nibbles, 64 of 2-bit high parts, int8
 *              scales[16], d (last)                              w = (d * sc_{j/16}) * (q - 32)
 *   mxfp4      32 weights, 17 bytes:  e8m0 exponent e, nibbles as q4_0 indexing the doubled e2m1
 *              values {0,1,2,3,4,6,8,12,0,-1,...,-12}                    w = 2^(e - 128) * v[q]
 * and, sharing the machinery, the FP8 weights that DeepSeek-V3/R1 and Kimi-K2 ship in safetensors
 * (an F8_E4M3 matrix plus an f32 weight_scale_inv per 128 x 128 tile; io/weight_pairs.c builds
 * these rows from the two tensors):
 *   f8_e4m3_b128  128 weights, 132 bytes: f32 scale s, 128 e4m3 bytes         w = e4m3(q) * s
 * MXFP4 shipped in safetensors (gpt-oss: *_blocks + *_scales) becomes mxfp4 rows the same way.
 * The converters compute exactly what the gguf package's numpy dequantizer computes (same float32
 * operations in the same order: the scale products first, then one multiply and one subtraction,
 * never a fused multiply-add), so the weights moe multiplies are bit for bit those of the reference.
 *
 * Products take f32 activations (no int8 rounding of x): the scalar kernel dequantizes a row and
 * sums x * w in order (the oracle); the SIMD kernels (ggml_tmpl.h) dequantize blocks into L1 and
 * multiply-add them with vector accumulators (decode), or dequantize tiles of rows and hand them to
 * the f32 kernel of their level (prefill: then the result is bit for bit the f32 product with the
 * dequantized matrix). */
#ifndef MOE_CORE_GGML_TYPES_H
#define MOE_CORE_GGML_TYPES_H
#include <stddef.h>
#include <stdint.h>

/* Row converters (exact, as the gguf package) and writers (plain round-to-nearest fits; llama.cpp's
 * quantizers search harder, but files written by any quantizer read the same way). */
#define MOE_GGML_ROW_DECLARE(t)                                             \
    void moe_##t##_to_f32(const void *row, int64_t cols, float *out);      \
    void moe_##t##_from_f32(const float *x, int64_t cols, void *row);      \
    void moe_gemm_##t##_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1); \
    void moe_gemm_##t##_avx2(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1);   \
    void moe_gemm_##t##_avx512(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1);
MOE_GGML_ROW_DECLARE(ggml_q8_0)
MOE_GGML_ROW_DECLARE(ggml_q4_0)
MOE_GGML_ROW_DECLARE(q4_1)
MOE_GGML_ROW_DECLARE(q5_0)
MOE_GGML_ROW_DECLARE(q5_1)
MOE_GGML_ROW_DECLARE(q4_k)
MOE_GGML_ROW_DECLARE(q5_k)
MOE_GGML_ROW_DECLARE(q6_k)
MOE_GGML_ROW_DECLARE(mxfp4)
MOE_GGML_ROW_DECLARE(f8_e4m3_b128)

/* e4m3 (OCP FP8, "fn": no infinities, S.1111.111 is NaN) to f32, exact; and f32 to e4m3 rounding to
 * nearest even, saturating to +-448 (as torch's float8_e4m3fn cast of finite values). */
float moe_e4m3_to_f32(uint8_t q);
uint8_t moe_f32_to_e4m3(float f);

/* Rows of f8_e4m3_b128 from an e4m3 matrix q [rows][cols] (cols a multiple of 128) and its tile scales
 * s [ceil(rows / 128)][cols / 128] (f32). */
void moe_f8b128_pack(const uint8_t *q, const float *s, int64_t rows, int64_t cols, uint8_t *out);
/* mxfp4 rows from gpt-oss's layout: blocks [n][16] (element 2i in the low nibble of byte i, 2i + 1 in the
 * high one) and e8m0 scales [n], n blocks of 32 in row order. */
void moe_mxfp4_pack_split(const uint8_t *blocks, const uint8_t *scales, int64_t n, uint8_t *out);

/* The scale and minimum codes of q4_k/q5_k sub-block s (0..7) from the 12 packed bytes. */
static inline void moe_k4_scale_min(const uint8_t *q, int s, int *sc, int *m) {
    if (s < 4) {
        *sc = q[s] & 63;
        *m = q[s + 4] & 63;
    } else {
        *sc = (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
        *m = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
    }
}

/* mxfp4: the doubled e2m1 values, and 2^(e - 128) as ggml builds it (subnormal for e < 2). */
extern const int8_t moe_mxfp4_values[16];
static inline float moe_e8m0_half(uint8_t e) {
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}
#endif
