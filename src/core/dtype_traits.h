/* dtype_traits.h - everything moe knows about a weight type, as one table entry (dtype_table.c).
 *
 * Adding a weight type is one enum value in dtype.h, one entry in dtype_table.c and its kernels:
 * every other place (weight loading, shape checks, expert slicing, embedding lookup, the products,
 * their thread split and cost model, the quantized file metadata) asks the table instead of
 * branching on the type.
 *
 * Rows: a row of `cols` weights takes ceil(cols / block) * block_bytes bytes. Whether the blocks are
 * interleaved with their scales (ggml) or the scales come first (moe's q8_0/q4) is the type's own
 * business: only its converter and kernels look inside a row.
 *
 * Kernels: gemm[level] computes y = x . W^T on f32 activations at that SIMD level; a NULL entry means
 * "use the level below" (moe_dtype_gemm walks down), so a type may have only a scalar kernel. Types
 * whose products quantize the activations to int8 first (moe's q8_0/q4) also have qgemm[level], which
 * moe_matmul uses so that x is quantized once per product rather than once per thread. */
#ifndef MOE_CORE_DTYPE_TRAITS_H
#define MOE_CORE_DTYPE_TRAITS_H
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/matmul.h"
#include "core/quant.h"

enum {
    MOE_DT_AVX512_VNNI = 1u << 0,   /* its AVX-512 kernels use VNNI: without it, use the AVX2 ones */
    MOE_DT_WHOLE_BLOCKS = 1u << 1,  /* rows must be whole blocks (ggml's formats); others pad the last block */
};

typedef struct moe_dtype_traits {
    const char *name;          /* lower-case, as moe prints it */
    const char *st_name;       /* safetensors dtype string; NULL if safetensors has no such dtype */
    const char *ggml_name;     /* GGUF (ggml) type name; NULL if GGUF has no such type */
    int block;                 /* elements per block (1 for plain types) */
    int block_bytes;           /* bytes per block */
    unsigned flags;            /* MOE_DT_* */
    /* one row of cols weights to f32; NULL: moe cannot read the type's values */
    void (*to_f32)(const void *row, int64_t cols, float *out);
    /* one row from f32 (rounding or quantizing); NULL: moe does not write the type */
    void (*quantize)(const float *x, int64_t cols, void *row);
    moe_gemm_kernel gemm[MOE_SIMD_LEVELS];
    moe_qgemm_kernel qgemm[MOE_SIMD_LEVELS];
} moe_dtype_traits;

/* The entry of t; an entry with name "?" and nothing else for an invalid value. */
const moe_dtype_traits *moe_dtype_traits_of(moe_dtype t);
/* A weight matrix of this type can be multiplied (it has kernels). */
int moe_dtype_is_matrix(moe_dtype t);
/* The f32-activation kernel for dt at SIMD level s or the nearest level below; NULL if none. */
moe_gemm_kernel moe_dtype_gemm(moe_dtype dt, moe_simd s);
/* The int8-activation kernel for dt at level s or below (respecting MOE_DT_AVX512_VNNI); NULL if none. */
moe_qgemm_kernel moe_dtype_qgemm(moe_dtype dt, moe_simd s);
/* "f32, f16, bf16, ...": the types a weight file may hold for moe to compute with, for messages. */
void moe_dtype_matrix_names(char *buf, size_t cap);
#endif
