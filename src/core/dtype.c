/* dtype.c - portable conversions of the plain float types to f32 (the SIMD kernels have their own);
 * the table that says which type uses which is dtype_table.c. */
#include "core/dtype.h"
#include <math.h>

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

void moe_row_f32_to_f32(const void *src, int64_t n, float *dst) { memcpy(dst, src, (size_t)n * 4); }
void moe_row_bf16_to_f32(const void *src, int64_t n, float *dst) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = moe_bf16_to_f32(s[i]);
}
void moe_row_f16_to_f32(const void *src, int64_t n, float *dst) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = moe_f16_to_f32(s[i]);
}
void moe_row_f64_to_f32(const void *src, int64_t n, float *dst) {
    const double *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
}

void moe_row_f32_from_f32(const float *x, int64_t n, void *dst) { memcpy(dst, x, (size_t)n * 4); }
void moe_row_f16_from_f32(const float *x, int64_t n, void *dst) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = moe_f32_to_f16(x[i]);
}
void moe_row_bf16_from_f32(const float *x, int64_t n, void *dst) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = moe_f32_to_bf16(x[i]);
}
