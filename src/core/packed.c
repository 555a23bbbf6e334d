/* packed.c - layout, scalar kernel and dispatch of 4-row-panel bf16 matrices (packed.h). */
#include "core/packed.h"
#include "core/cpu.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int moe_bf16p_eligible(int64_t rows, int64_t cols) {
    return rows > 0 && cols > 0 && rows % MOE_BF16P_GROUP == 0 && cols % MOE_BF16P_BLOCK == 0;
}

/* element (r, k) of a packed matrix with `cols` columns */
static inline size_t at(int cols, int r, int k) {
    return (size_t)(r / MOE_BF16P_GROUP) * MOE_BF16P_GROUP * cols + (size_t)(k / MOE_BF16P_BLOCK) * MOE_BF16P_GROUP * MOE_BF16P_BLOCK +
           (size_t)(r % MOE_BF16P_GROUP) * MOE_BF16P_BLOCK + (size_t)(k % MOE_BF16P_BLOCK);
}

void moe_bf16p_pack(const uint16_t *src, int rows, int cols, uint16_t *dst) {
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < cols; k += MOE_BF16P_BLOCK)
            memcpy(dst + at(cols, r, k), src + (size_t)r * cols + k, MOE_BF16P_BLOCK * sizeof(uint16_t));
}

void moe_bf16p_unpack_rows(const uint16_t *p, int cols, int r0, int nr, uint16_t *dst) {
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < cols; k += MOE_BF16P_BLOCK)
            memcpy(dst + (size_t)r * cols + k, p + at(cols, r0 + r, k), MOE_BF16P_BLOCK * sizeof(uint16_t));
}

/* The AVX2 kernel's arithmetic for one row: 8 lanes; lane j takes elements 16c + j then 16c + 8 + j of
 * every block c by fused multiply-add; then (j, j+4) pairs, then (j, j+2), then (0, 1). */
void moe_bf16p_gemv_row(float *y, const float *x, const uint16_t *w, int in, int o) {
    float acc[8] = {0};
    for (int k = 0; k < in; k += MOE_BF16P_BLOCK) {
        const uint16_t *b = w + at(in, o, k);
        for (int j = 0; j < 8; j++) acc[j] = fmaf(moe_bf16_to_f32(b[j]), x[k + j], acc[j]);
        for (int j = 0; j < 8; j++) acc[j] = fmaf(moe_bf16_to_f32(b[8 + j]), x[k + 8 + j], acc[j]);
    }
    float s4[4], s2[2];
    for (int j = 0; j < 4; j++) s4[j] = acc[j] + acc[j + 4];
    for (int j = 0; j < 2; j++) s2[j] = s4[j] + s4[j + 2];
    *y = s2[0] + s2[1];
}

/* Tiles of about 4 MiB (a multiple of 48 rows, at least 48) from o0, the last one taking a remainder
 * shorter than 48 rows: large tiles because the ordinary kernel repacks x for every call (prefill's
 * x is much larger than a 48-row tile of W), and never a tile shorter than 48 rows where the whole
 * range is longer, because that kernel decides per call whether a range is long enough for its bf16
 * pair loads (8 rows): so the result is exactly that of one call over the whole range. */
void moe_bf16p_gemm_rows(float *y, size_t ldy, const float *x, size_t ldx, int n, const uint16_t *w, int in, int o0, int o1) {
    moe_gemm_kernel k = moe_gemm_pick(MOE_BF16);
    int step = (int)(((size_t)4 << 20) / ((size_t)in * sizeof(uint16_t)) / 48 * 48);
    if (step < 48) step = 48;
    int cap = o1 - o0 < step + 47 ? o1 - o0 : step + 47;   /* the longest tile */
    uint16_t *tile = malloc((size_t)cap * in * sizeof(uint16_t));
    for (int o = o0; o < o1;) {
        int nr = o1 - o < step + 48 ? o1 - o : step;
        if (tile && k) {
            moe_bf16p_unpack_rows(w, in, o, nr, tile);
            k(y + o, ldy, x, ldx, n, tile, in, 0, nr);
        } else { /* no memory for a tile: one row and one x row at a time */
            for (int t = 0; t < n; t++)
                for (int r = o; r < o + nr; r++) moe_bf16p_gemv_row(y + (size_t)t * ldy + r, x + (size_t)t * ldx, w, in, r);
        }
        o += nr;
    }
    free(tile);
}

void moe_gemm_bf16p_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0, int o1) {
    if (n != 1) { moe_bf16p_gemm_rows(y, ldy, x, ldx, n, w, in, o0, o1); return; }
    for (int o = o0; o < o1; o++) moe_bf16p_gemv_row(y + o, x, w, in, o);
}
