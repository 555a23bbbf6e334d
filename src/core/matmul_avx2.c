/* matmul_avx2.c - the AVX2+FMA+F16C instantiation of matmul_tmpl.h (16 ymm registers, 8 lanes);
 * tile shapes in matmul_shapes.h. */
#include "core/vec_avx2.h"
#include "core/matmul_shapes.h"
#define MM_LINK
#include "core/matmul_tmpl.h"

