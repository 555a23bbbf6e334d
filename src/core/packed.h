/* packed.h - bf16 weight matrices in 4-row panels (dtype MOE_BF16P), a layout for decode.
 *
 * Decode multiplies one token by each matrix once, reading it cold from memory. The row-major kernel
 * reads 4 rows side by side, 4 streams each one row long; with 1-2 KiB rows a stream ends before the
 * hardware prefetcher is up to speed, and the product reads at 63-74% of a plain sequential read on
 * the development VM (bench/bench_gemv_layout.c). Packed, rows 4g..4g+3 are stored as consecutive
 * blocks of 16 columns x 4 rows (block c of group g at element (4g)*cols + 64c, row r of the block at
 * +16r), so a group is one sequential stream; the one-token kernel reads two groups from the two
 * halves of its row range at once: two long streams, at 95-123% of a plain read.
 *
 * The element order inside a 16-column block is that of the row, so a row of a block is one load.
 * Matrices qualify when rows % 4 == 0 and cols % 16 == 0. Products with one x row run the panel
 * kernel; with more rows (prefill) tiles of about 4 MiB are unpacked into a row-major buffer and
 * handed to the ordinary bf16 kernel, so those results are bit-identical to the row-major layout's. The scalar
 * one-row kernel computes exactly what the AVX2 one does (same lanes, fused multiply-adds, the same
 * reduction tree), so it is an exact oracle. */
#ifndef MOE_CORE_PACKED_H
#define MOE_CORE_PACKED_H
#include <stddef.h>
#include <stdint.h>
#include "core/matmul.h"

#define MOE_BF16P_GROUP 4
#define MOE_BF16P_BLOCK 16

int moe_bf16p_eligible(int64_t rows, int64_t cols);
/* dst (rows x cols bf16, packed) from the row-major src; dst must not overlap src. */
void moe_bf16p_pack(const uint16_t *src, int rows, int cols, uint16_t *dst);
/* Rows [r0, r0 + nr) of a packed matrix into row-major dst[nr][cols]. */
void moe_bf16p_unpack_rows(const uint16_t *p, int cols, int r0, int nr, uint16_t *dst);

/* Kernels with the moe_gemm_kernel signature (w packed). */
void moe_gemm_bf16p_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1);
void moe_gemm_bf16p_avx2(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1);

/* Shared by the kernels: the multi-row path (unpack tiles, ordinary bf16 kernel), and single
 * rows outside whole groups (o0 or o1 not a multiple of 4), computed like the scalar kernel. */
void moe_bf16p_gemm_rows(float *y, size_t ldy, const float *x, size_t ldx, int n, const uint16_t *w, int in, int o0, int o1);
void moe_bf16p_gemv_row(float *y, const float *x, const uint16_t *w, int in, int o);
#endif
