/* quant.h - block-quantized weight matrices and their products with f32 activations.
 *
 * Formats (one matrix row at a time; a row of `cols` weights is padded with zeros to K = 32*nb):
 *   q8_0  nb f16 scales d, then nb blocks of 32 int8 q:            w = d * q,       34 bytes / 32 weights
 *   q4    nb f16 scales d, nb f16 minimums m, then nb blocks of 16 bytes holding 32 4-bit q (element j
 *         of a block in the low nibble of byte j for j < 16, the high nibble of byte j-16 otherwise):
 *                                                                    w = d * q + m,   20 bytes / 32 weights
 * Scales and quants are stored apart (all scales of a row first) so that SIMD code loads 32 or 64
 * quants with one instruction; a row is self-contained, so rows can be split across threads.
 *
 * Products. As in llama.cpp, the activations are quantized too, per block of 32, to int8 with an f32
 * scale (and, for q4's minimum term, the block's sum d_x * sum q_x); a block's dot product is then an
 * exact integer sum times two scales:
 *   q8_0:  sum_b  d_b dx_b * sum_j q_bj qx_bj
 *   q4:    sum_b (d_b dx_b * sum_j q_bj qx_bj  +  m_b sx_b)
 * The integer sums are identical in the scalar oracle and the SIMD kernels; only the order of the f32
 * additions differs. */
#ifndef MOE_CORE_QUANT_H
#define MOE_CORE_QUANT_H
#include <stddef.h>
#include <stdint.h>
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/matmul.h"

#define MOE_QBLOCK 32

/* Blocks per row and bytes per row of a quantized matrix with `cols` columns (0 if not quantized). */
static inline int64_t moe_quant_blocks(int64_t cols) { return (cols + MOE_QBLOCK - 1) / MOE_QBLOCK; }
size_t moe_quant_row_bytes(moe_dtype t, int64_t cols);
/* The block type moe writes under this name ("q8_0", "q4": a quantizer in the dtype table); -1 otherwise. */
int moe_quant_type_from_name(const char *s);

/* Quantize / dequantize one row (cols values) of any type with a quantizer / converter in the table. */
void moe_quantize_row(moe_dtype t, const float *x, int64_t cols, void *out);
void moe_dequantize_row(moe_dtype t, const void *row, int64_t cols, float *out);
/* The two formats' own row functions (the table's entries). */
void moe_q8_0_quantize_row(const float *x, int64_t cols, void *out);
void moe_q8_0_dequantize_row(const void *row, int64_t cols, float *out);
void moe_q4_quantize_row(const float *x, int64_t cols, void *out);
void moe_q4_dequantize_row(const void *row, int64_t cols, float *out);

/* Activations quantized per block: n rows of nb blocks. */
typedef struct moe_qact {
    int nb;
    const int8_t *q;   /* [n][nb*32] */
    const float *d;    /* [n][nb] scale */
    const float *s;    /* [n][nb] d * sum(q) */
} moe_qact;
void moe_quantize_act_row(const float *x, int cols, int nb, int8_t *q, float *d, float *s);

/* y[t*ldy + o] = row o of W . x_t  for t in [0,n), o in [o0,o1); W rows are row_bytes apart. */
typedef void (*moe_qgemm_kernel)(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes,
                                 int o0, int o1);
/* The kernels per SIMD level (the AVX-512 ones need VNNI; the dtype table says so). */
#define MOE_QGEMM_DECLARE(isa)                                                                            \
    void moe_qgemm_q8_0_##isa(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes, \
                              int o0, int o1);                                                            \
    void moe_qgemm_q4_##isa(float *y, size_t ldy, const moe_qact *x, int n, const void *w, size_t row_bytes,   \
                            int o0, int o1);
MOE_QGEMM_DECLARE(scalar)
MOE_QGEMM_DECLARE(avx2)
MOE_QGEMM_DECLARE(avx512)

/* Kernels with the moe_gemm_kernel signature (f32 activations, quantized on each call, then the
 * current level's kernel) for callers that schedule small products themselves (moe_gemm_pick). */
void moe_qgemm_adapt_q8_0(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1);
void moe_qgemm_adapt_q4(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1);

/* Y[n][out] = X[n][in] . W^T for quantized W (the hook moe_matmul calls for these dtypes). */
void moe_qmatmul_ld(float *y, size_t ldy, const float *x, size_t ldx, int n, moe_dtype dt, const void *w, int out,
                    int in);
#endif
