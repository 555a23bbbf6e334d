/* delta_rule_avx2.c - the AVX2+FMA instantiation of delta_rule_tmpl.h. */
#include "core/vec_avx2.h"
#include "core/delta_rule_tmpl.h"

const moe_delta_kernels moe_delta_avx2 = DELTA_TABLE;
