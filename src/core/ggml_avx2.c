/* ggml_avx2.c - the AVX2 instantiation of ggml_tmpl.h (products of llama.cpp's block formats). */
#include "core/vec_avx2.h"
#include "core/ggml_tmpl.h"
