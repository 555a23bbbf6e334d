/* cpu.h - run-time SIMD level. The level is the best the CPU and the OS both support: CPUID says what
 * the core can execute, XCR0 says whether the kernel saves the wide registers on context switches
 * (a VM may expose AVX-512 instructions without enabling ZMM state, which would corrupt registers). */
#ifndef MOE_CORE_CPU_H
#define MOE_CORE_CPU_H

typedef enum moe_simd { MOE_SIMD_SCALAR = 0, MOE_SIMD_AVX2 = 1, MOE_SIMD_AVX512 = 2 } moe_simd;
#define MOE_SIMD_LEVELS 3

moe_simd moe_simd_detect(void);     /* what the hardware and OS allow */
moe_simd moe_simd_level(void);      /* what is in use: detected, lowered by MOE_SIMD=scalar|avx2 */
void moe_simd_force(moe_simd s);    /* tests: run kernels at a lower level (clamped to detected) */
int moe_cpu_has_avx512_vnni(void);
int moe_cpu_has_avx512_bf16(void);
#endif
