/* ops_avx2.c - the AVX2+FMA instantiation of ops_tmpl.h. */
#include "core/vec_avx2.h"
#include "core/ops_tmpl.h"

const moe_ops_kernels moe_ops_avx2 = OPS_TABLE;
