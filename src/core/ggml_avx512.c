/* ggml_avx512.c - the AVX-512 instantiation of ggml_tmpl.h: 16-lane multiply-adds with four x rows
 * per pass in decode, and the AVX-512 f32 kernel for prefill tiles. Runs only where
 * moe_simd_detect() allows AVX-512. */
#include "core/vec_avx512.h"
#include "core/ggml_tmpl.h"
