/* dtype.c - dtype table and portable half-precision conversions (the SIMD kernels have their own). */
#include "core/dtype.h"
#include <math.h>

static const struct { const char *st_name, *name; size_t size; } k_dtypes[MOE_DTYPE_COUNT] = {
    [MOE_F32] = {"F32", "f32", 4},   [MOE_F16] = {"F16", "f16", 2},   [MOE_BF16] = {"BF16", "bf16", 2},
    [MOE_F64] = {"F64", "f64", 8},   [MOE_I8] = {"I8", "i8", 1},      [MOE_U8] = {"U8", "u8", 1},
    [MOE_I16] = {"I16", "i16", 2},   [MOE_U16] = {"U16", "u16", 2},   [MOE_I32] = {"I32", "i32", 4},
    [MOE_U32] = {"U32", "u32", 4},   [MOE_I64] = {"I64", "i64", 8},   [MOE_U64] = {"U64", "u64", 8},
    [MOE_BOOL] = {"BOOL", "bool", 1}, [MOE_F8_E4M3] = {"F8_E4M3", "f8_e4m3", 1},
    [MOE_F8_E5M2] = {"F8_E5M2", "f8_e5m2", 1},
    [MOE_Q8_0] = {NULL, "q8_0", 0},   [MOE_Q4] = {NULL, "q4", 0},     [MOE_BF16P] = {NULL, "bf16p", 2},
};

size_t moe_dtype_size(moe_dtype t) { return (unsigned)t < MOE_DTYPE_COUNT ? k_dtypes[t].size : 0; }
const char *moe_dtype_name(moe_dtype t) { return (unsigned)t < MOE_DTYPE_COUNT ? k_dtypes[t].name : "?"; }

int moe_dtype_from_safetensors(const char *s) {
    for (int i = 0; i < MOE_DTYPE_COUNT; i++)
        if (k_dtypes[i].st_name && strcmp(s, k_dtypes[i].st_name) == 0) return i;
    return -1;
}

float moe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: value = man * 2^-24 */
            float f = ldexpf((float)man, -24);
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t moe_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;      /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00;     /* overflow to inf (rounds up past 65504) */
    if (a < 0x38800000u) {                          /* subnormal or zero: round n*2^-24 to nearest even */
        float v = fabsf(f) * 16777216.0f;          /* exact scaling by 2^24 */
        float r = rintf(v);
        return sign | (uint16_t)r;
    }
    uint32_t mant = a & 0x7fffff, exp = (a >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

void moe_to_f32(moe_dtype t, const void *src, float *dst, size_t n) {
    switch (t) {
    case MOE_F32: memcpy(dst, src, n * 4); break;
    case MOE_BF16: { const uint16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = moe_bf16_to_f32(s[i]); } break;
    case MOE_F16: { const uint16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = moe_f16_to_f32(s[i]); } break;
    case MOE_F64: { const double *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; } break;
    default: for (size_t i = 0; i < n; i++) dst[i] = NAN; break;
    }
}
