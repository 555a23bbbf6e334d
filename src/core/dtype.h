/* dtype.h - element types of weight tensors and scalar conversions.
 * bf16 and f16 stay in their storage type in memory; kernels widen them to f32 on the fly. */
#ifndef MOE_CORE_DTYPE_H
#define MOE_CORE_DTYPE_H
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
    MOE_DTYPE_COUNT
} moe_dtype;

/* Bytes per element; 0 for an invalid value. */
size_t moe_dtype_size(moe_dtype t);
/* Lower-case name ("f32", "bf16", ...). */
const char *moe_dtype_name(moe_dtype t);
/* Parse a safetensors dtype string ("F32", "BF16", ...). Returns -1 if unknown. */
int moe_dtype_from_safetensors(const char *s);

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

/* Convert n elements of type t at src to f32. */
void moe_to_f32(moe_dtype t, const void *src, float *dst, size_t n);
#endif
