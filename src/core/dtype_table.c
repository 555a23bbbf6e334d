/* dtype_table.c - the one table of weight types (see dtype_traits.h) and the lookups answered from it.
 *
 * Each entry: moe's name, the safetensors name, block size and bytes, the row converter to f32, the
 * quantizer (types moe writes), and the product kernels per SIMD level (scalar, AVX2, AVX-512; a
 * NULL level falls back to the one below). Integer and 8-bit float types are listed so that files
 * holding them parse, but moe cannot compute with them. */
#include "core/dtype_traits.h"
#include "core/ggml_types.h"
#include "core/packed.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define PLAIN(nm, st, bytes, conv) .name = nm, .st_name = st, .block = 1, .block_bytes = bytes, .to_f32 = conv
#define GEMM3(t) .gemm = {moe_gemm_##t##_scalar, moe_gemm_##t##_avx2, moe_gemm_##t##_avx512}
#define GGML(nm, gg, blk, bytes, t)                                                                       \
    .name = nm, .ggml_name = gg, .block = blk, .block_bytes = bytes, .flags = MOE_DT_WHOLE_BLOCKS,          \
    .to_f32 = moe_##t##_to_f32, .quantize = moe_##t##_from_f32, GEMM3(t)

static const moe_dtype_traits k_traits[MOE_DTYPE_COUNT] = {
    [MOE_F32] = {PLAIN("f32", "F32", 4, moe_row_f32_to_f32), .ggml_name = "F32", .quantize = moe_row_f32_from_f32, GEMM3(f32)},
    [MOE_F16] = {PLAIN("f16", "F16", 2, moe_row_f16_to_f32), .ggml_name = "F16", .quantize = moe_row_f16_from_f32, GEMM3(f16)},
    [MOE_BF16] = {PLAIN("bf16", "BF16", 2, moe_row_bf16_to_f32), .ggml_name = "BF16", .quantize = moe_row_bf16_from_f32,
                  GEMM3(bf16)},
    [MOE_F64] = {PLAIN("f64", "F64", 8, moe_row_f64_to_f32)},
    [MOE_I8] = {PLAIN("i8", "I8", 1, NULL)},
    [MOE_U8] = {PLAIN("u8", "U8", 1, NULL)},
    [MOE_I16] = {PLAIN("i16", "I16", 2, NULL)},
    [MOE_U16] = {PLAIN("u16", "U16", 2, NULL)},
    [MOE_I32] = {PLAIN("i32", "I32", 4, NULL)},
    [MOE_U32] = {PLAIN("u32", "U32", 4, NULL)},
    [MOE_I64] = {PLAIN("i64", "I64", 8, NULL)},
    [MOE_U64] = {PLAIN("u64", "U64", 8, NULL)},
    [MOE_BOOL] = {PLAIN("bool", "BOOL", 1, NULL)},
    [MOE_F8_E4M3] = {PLAIN("f8_e4m3", "F8_E4M3", 1, NULL)},
    [MOE_F8_E5M2] = {PLAIN("f8_e5m2", "F8_E5M2", 1, NULL)},
    /* moe's block formats (core/quant.h): products on int8-quantized activations */
    [MOE_Q8_0] = {.name = "q8_0", .block = 32, .block_bytes = 34, .flags = MOE_DT_AVX512_VNNI,
                  .to_f32 = moe_q8_0_dequantize_row, .quantize = moe_q8_0_quantize_row,
                  .gemm = {moe_qgemm_adapt_q8_0},
                  .qgemm = {moe_qgemm_q8_0_scalar, moe_qgemm_q8_0_avx2, moe_qgemm_q8_0_avx512}},
    [MOE_Q4] = {.name = "q4", .block = 32, .block_bytes = 20, .flags = MOE_DT_AVX512_VNNI,
                .to_f32 = moe_q4_dequantize_row, .quantize = moe_q4_quantize_row,
                .gemm = {moe_qgemm_adapt_q4},
                .qgemm = {moe_qgemm_q4_scalar, moe_qgemm_q4_avx2, moe_qgemm_q4_avx512}},
    /* bf16 in 4-row panels (core/packed.h): a layout of whole matrices, so no row converter */
    [MOE_BF16P] = {.name = "bf16p", .block = 1, .block_bytes = 2,
                   .gemm = {moe_gemm_bf16p_scalar, moe_gemm_bf16p_avx2}},
    /* llama.cpp's block formats (core/ggml_types.h): products on f32 activations */
    [MOE_GGML_Q8_0] = {GGML("ggml_q8_0", "Q8_0", 32, 34, ggml_q8_0)},
    [MOE_GGML_Q4_0] = {GGML("ggml_q4_0", "Q4_0", 32, 18, ggml_q4_0)},
    [MOE_Q4_1] = {GGML("q4_1", "Q4_1", 32, 20, q4_1)},
    [MOE_Q5_0] = {GGML("q5_0", "Q5_0", 32, 22, q5_0)},
    [MOE_Q5_1] = {GGML("q5_1", "Q5_1", 32, 24, q5_1)},
    [MOE_Q4_K] = {GGML("q4_k", "Q4_K", 256, 144, q4_k)},
    [MOE_Q5_K] = {GGML("q5_k", "Q5_K", 256, 176, q5_k)},
    [MOE_Q6_K] = {GGML("q6_k", "Q6_K", 256, 210, q6_k)},
    [MOE_MXFP4] = {GGML("mxfp4", "MXFP4", 32, 17, mxfp4)},
    /* FP8 with block scales (safetensors pairs, io/weight_pairs.c): no GGUF type of its own */
    [MOE_F8_E4M3_B128] = {GGML("f8_e4m3_b128", NULL, 128, 132, f8_e4m3_b128)},
};

static const moe_dtype_traits k_invalid = {.name = "?", .block = 1};

const moe_dtype_traits *moe_dtype_traits_of(moe_dtype t) {
    return (unsigned)t < MOE_DTYPE_COUNT ? &k_traits[t] : &k_invalid;
}

size_t moe_dtype_size(moe_dtype t) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    return tr->block == 1 ? (size_t)tr->block_bytes : 0;
}

size_t moe_dtype_row_bytes(moe_dtype t, int64_t cols) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    return cols <= 0 ? 0 : (size_t)((cols + tr->block - 1) / tr->block) * (size_t)tr->block_bytes;
}

int moe_dtype_block(moe_dtype t) { return moe_dtype_traits_of(t)->block; }
int moe_dtype_is_quant(moe_dtype t) { return moe_dtype_traits_of(t)->block > 1; }
const char *moe_dtype_name(moe_dtype t) { return moe_dtype_traits_of(t)->name; }

int moe_dtype_from_safetensors(const char *s) {
    for (int i = 0; i < MOE_DTYPE_COUNT; i++)
        if (k_traits[i].st_name && strcmp(s, k_traits[i].st_name) == 0) return i;
    return -1;
}

int moe_dtype_from_ggml_name(const char *s) {
    for (int i = 0; i < MOE_DTYPE_COUNT; i++)
        if (k_traits[i].ggml_name && strcmp(s, k_traits[i].ggml_name) == 0) return i;
    return -1;
}

void moe_dtype_ggml_names(char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < MOE_DTYPE_COUNT; i++)
        if (k_traits[i].ggml_name && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", k_traits[i].ggml_name);
}

int moe_dtype_from_name(const char *s) {
    for (int i = 0; i < MOE_DTYPE_COUNT; i++)
        if (strcmp(s, k_traits[i].name) == 0) return i;
    return -1;
}

void moe_to_f32(moe_dtype t, const void *src, float *dst, size_t n) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    if (tr->block == 1 && tr->to_f32) tr->to_f32(src, (int64_t)n, dst);
    else for (size_t i = 0; i < n; i++) dst[i] = NAN;
}

int moe_rows_to_f32(moe_dtype t, const void *src, int64_t rows, int64_t cols, float *dst) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    if (!tr->to_f32) return -1;
    size_t rb = moe_dtype_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; r++) tr->to_f32((const char *)src + (size_t)r * rb, cols, dst + (size_t)r * cols);
    return 0;
}

int moe_dtype_is_matrix(moe_dtype t) { return moe_dtype_gemm(t, MOE_SIMD_SCALAR) != NULL; }

moe_gemm_kernel moe_dtype_gemm(moe_dtype dt, moe_simd s) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(dt);
    for (int l = (int)s; l >= MOE_SIMD_SCALAR; l--)
        if (l < MOE_SIMD_LEVELS && tr->gemm[l]) return tr->gemm[l];
    return NULL;
}

moe_qgemm_kernel moe_dtype_qgemm(moe_dtype dt, moe_simd s) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(dt);
    for (int l = (int)s; l >= MOE_SIMD_SCALAR; l--) {
        if (l == MOE_SIMD_AVX512 && (tr->flags & MOE_DT_AVX512_VNNI) && !moe_cpu_has_avx512_vnni()) continue;
        if (l < MOE_SIMD_LEVELS && tr->qgemm[l]) return tr->qgemm[l];
    }
    return NULL;
}

void moe_dtype_matrix_names(char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < MOE_DTYPE_COUNT; i++)
        if (k_traits[i].gemm[0] && k_traits[i].to_f32 && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", k_traits[i].name);
}
