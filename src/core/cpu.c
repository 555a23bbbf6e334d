/* cpu.c - SIMD detection with CPUID + XGETBV, and the MOE_SIMD environment override. */
#include "core/cpu.h"
#include "moe.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static int g_detected = -1, g_level = -1, g_vnni, g_bf16;

static unsigned long long read_xcr0(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#else
    return 0;
#endif
}

static void detect(void) {
    if (g_detected >= 0) return;
    int level = MOE_SIMD_SCALAR;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
        unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
        int ymm_ok = (xcr0 & 0x6) == 0x6, zmm_ok = (xcr0 & 0xe6) == 0xe6;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
            int avx512dq = (b >> 17) & 1;
            g_vnni = (c >> 11) & 1;
            if (avx && avx2 && fma && f16c && ymm_ok) level = MOE_SIMD_AVX2;
            if (level == MOE_SIMD_AVX2 && avx512f && avx512bw && avx512vl && avx512dq && zmm_ok) level = MOE_SIMD_AVX512;
            unsigned a1, b1, c1, d1;
            if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) g_bf16 = (a1 >> 5) & 1;
            if (level != MOE_SIMD_AVX512) g_vnni = g_bf16 = 0;
        }
    }
#endif
    g_detected = level;
    g_level = level;
    const char *env = getenv("MOE_SIMD");
    if (env) {
        if (!strcmp(env, "scalar")) g_level = MOE_SIMD_SCALAR;
        else if (!strcmp(env, "avx2") && g_detected >= MOE_SIMD_AVX2) g_level = MOE_SIMD_AVX2;
    }
}

moe_simd moe_simd_detect(void) { detect(); return (moe_simd)g_detected; }
moe_simd moe_simd_level(void) { detect(); return (moe_simd)g_level; }
void moe_simd_force(moe_simd s) { detect(); g_level = (int)s < g_detected ? (int)s : g_detected; }
int moe_cpu_has_avx512_vnni(void) { detect(); return g_vnni; }
int moe_cpu_has_avx512_bf16(void) { detect(); return g_bf16; }

const char *moe_simd_name(void) {
    switch (moe_simd_level()) {
    case MOE_SIMD_AVX512: return "avx512";
    case MOE_SIMD_AVX2: return "avx2";
    default: return "scalar";
    }
}
