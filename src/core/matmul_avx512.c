/* matmul_avx512.c - the AVX-512 instantiation of matmul_tmpl.h (32 zmm registers, 16 lanes);
 * tile shapes in matmul_shapes.h use the doubled register file (16 accumulators for n = 2 and
 * n = 4 in decode, 6 x rows by 4 W rows in prefill).
 * This code runs only where moe_simd_detect() allows. Its logic is the template's, which the AVX2
 * build and a 16-lane emulation on AVX2 (tests/unit/vec_emu16.h) exercise in the tests; what is
 * specific here is the vocabulary in vec_avx512.h.
 * bf16 weights are widened to f32, not multiplied with vdpbf16ps: that instruction also rounds x to
 * bf16, which costs ~3 significant digits and would break agreement with PyTorch in f32. */
#include "core/vec_avx512.h"
#include "core/matmul_shapes.h"
#define MM_LINK
#include "core/matmul_tmpl.h"

