/* emu16_kernels.h - the AVX-512 kernel logic compiled over the 16-lane AVX2 emulation of
 * vec_emu16.h (see there), as kernel tables (gemm and ops) the tests compare with the scalar oracles. Callers must
 * check moe_simd_detect() >= MOE_SIMD_AVX2 before calling anything here. */
#ifndef MOE_TEST_EMU16_KERNELS_H
#define MOE_TEST_EMU16_KERNELS_H
#include "core/alloc.h"
#include "core/matmul.h"
#include "core/ops.h"
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include "unit/vec_emu16.h"
#include "core/matmul_shapes.h"
#include "core/matmul_tmpl.h"
#include "core/ops_tmpl.h"
static const moe_gemm_kernel emu16_gemm[MOE_DTYPE_COUNT] = {
    [MOE_F32] = moe_gemm_f32_emu16, [MOE_BF16] = moe_gemm_bf16_emu16, [MOE_F16] = moe_gemm_f16_emu16};
static const moe_ops_kernels emu16_ops = OPS_TABLE;
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
