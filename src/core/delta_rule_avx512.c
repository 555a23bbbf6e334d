/* delta_rule_avx512.c - the AVX-512 instantiation of delta_rule_tmpl.h (runs only where moe_simd_detect()
 * allows; its logic is also tested through the 16-lane emulation in tests/unit/vec_emu16.h). */
#include "core/vec_avx512.h"
#include "core/delta_rule_tmpl.h"

const moe_delta_kernels moe_delta_avx512 = DELTA_TABLE;
