/* ops_avx512.c - the AVX-512 instantiation of ops_tmpl.h (runs only where moe_simd_detect() allows;
 * its logic is tested through the 16-lane emulation in tests/unit/vec_emu16.h). */
#include "core/vec_avx512.h"
#include "core/ops_tmpl.h"

const moe_ops_kernels moe_ops_avx512 = OPS_TABLE;
