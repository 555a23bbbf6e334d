/* dtype.h - element types of weight tensors, their sizes and scalar conversions.
 * What moe knows about each type (block size, bytes, conversion to f32, quantizer, product kernels per
 * SIMD level) is one entry of the table in dtype_table.c (core/dtype_traits.h); the functions here
 * answer from that table. bf16 and f16 stay in their storage type in memory; kernels widen them to
 * f32 on the fly. Block types (moe's q8_0/q4) store a row of `cols` weights as whole blocks. */
#ifndef MOE_CORE_DTYPE_H
#define MOE_CORE_DTYPE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum moe_dtype {
    MOE_F32 = 0,
    MOE_F16,
    MOE_BF16,
    MOE_F64,
    MOE_I8, MOE_U8, MOE_I16, MOE_U16, MOE_I32, MOE_U32, MOE_I64, MOE_U64, MOE_BOOL,
    MOE_F8_E4M3, MOE_F8_E5M2,
    MOE_Q8_0, MOE_Q4,          /* block-quantized matrices (core/quant.h); size 0: bytes are per row */
    MOE_BF16P,                 /* bf16 matrix in 4-row panels for decode (core/packed.h); never in files */
    /* llama.cpp's block formats, in their own layout (core/ggml_types.h) */
    MOE_GGML_Q8_0, MOE_GGML_Q4_0, MOE_Q4_1, MOE_Q5_0, MOE_Q5_1, MOE_Q4_K, MOE_Q5_K, MOE_Q6_K, MOE_MXFP4,
    MOE_F8_E4M3_B128,          /* e4m3 with a scale per 128 weights of a row (DeepSeek's FP8, core/ggml_types.h) */
    MOE_DTYPE_COUNT
} moe_dtype;

/* Bytes per element of a type with one element per block; 0 for block types and invalid values. */
size_t moe_dtype_size(moe_dtype t);
/* Bytes of one row of `cols` weights (padded to whole blocks); 0 for an invalid type. */
size_t moe_dtype_row_bytes(moe_dtype t, int64_t cols);
/* Elements per block (1 for plain types). */
int moe_dtype_block(moe_dtype t);
/* Block-quantized: rows are blocks with scales, there is no per-element size. */
int moe_dtype_is_quant(moe_dtype t);
/* Lower-case name ("f32", "bf16", "q8_0", ...); "?" for an invalid value. */
const char *moe_dtype_name(moe_dtype t);
/* Parse a safetensors dtype string ("F32", "BF16", ...). Returns -1 if unknown. */
int moe_dtype_from_safetensors(const char *s);
/* The type whose moe name is s, or -1. */
int moe_dtype_from_name(const char *s);
/* The type of a ggml type name ("Q4_K", "F32"), or -1 if moe does not read it. */
int moe_dtype_from_ggml_name(const char *s);
/* "F32, F16, ...": the ggml types moe reads, for messages. */
void moe_dtype_ggml_names(char *buf, size_t cap);

static inline float moe_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as torch does; NaN stays NaN. */
static inline uint16_t moe_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float moe_f16_to_f32(uint16_t h);
uint16_t moe_f32_to_f16(float f);

/* Convert n elements of a plain type t at src to f32 (NaN for a type without a conversion, or a
 * block type: use moe_rows_to_f32). */
void moe_to_f32(moe_dtype t, const void *src, float *dst, size_t n);
/* Convert a [rows][cols] matrix of any type with a conversion; returns 0, or -1 (dst untouched) if t
 * has none. */
int moe_rows_to_f32(moe_dtype t, const void *src, int64_t rows, int64_t cols, float *dst);

/* Row converters of the plain float types (dtype.c), for the table. */
void moe_row_f32_to_f32(const void *src, int64_t n, float *dst);
void moe_row_f16_to_f32(const void *src, int64_t n, float *dst);
void moe_row_bf16_to_f32(const void *src, int64_t n, float *dst);
void moe_row_f64_to_f32(const void *src, int64_t n, float *dst);
void moe_row_f32_from_f32(const float *x, int64_t n, void *dst);
void moe_row_f16_from_f32(const float *x, int64_t n, void *dst);
void moe_row_bf16_from_f32(const float *x, int64_t n, void *dst);
#endif
