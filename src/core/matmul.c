/* matmul.c - dispatch of the dense products, and the scalar kernels that serve as test oracles. */
#include "core/matmul.h"
#include "core/quant.h"
#include <omp.h>
#include <stdint.h>

static void gemm_f32_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in,
                            int o0, int o1) {
    const float *W = w;
    for (int t = 0; t < n; t++)
        for (int o = o0; o < o1; o++) {
            const float *wr = W + (size_t)o * in, *xr = x + t * ldx;
            float s = 0;
            for (int i = 0; i < in; i++) s += xr[i] * wr[i];
            y[t * ldy + o] = s;
        }
}

static void gemm_bf16_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in,
                             int o0, int o1) {
    const uint16_t *W = w;
    for (int t = 0; t < n; t++)
        for (int o = o0; o < o1; o++) {
            const uint16_t *wr = W + (size_t)o * in;
            const float *xr = x + t * ldx;
            float s = 0;
            for (int i = 0; i < in; i++) s += xr[i] * moe_bf16_to_f32(wr[i]);
            y[t * ldy + o] = s;
        }
}

static void gemm_f16_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in,
                            int o0, int o1) {
    const uint16_t *W = w;
    for (int t = 0; t < n; t++)
        for (int o = o0; o < o1; o++) {
            const uint16_t *wr = W + (size_t)o * in;
            const float *xr = x + t * ldx;
            float s = 0;
            for (int i = 0; i < in; i++) s += xr[i] * moe_f16_to_f32(wr[i]);
            y[t * ldy + o] = s;
        }
}

const moe_gemm_kernels moe_gemm_scalar = {gemm_f32_scalar, gemm_bf16_scalar, gemm_f16_scalar};

const moe_gemm_kernels *moe_gemm_kernels_for(moe_simd s) {
    switch (s) {
    case MOE_SIMD_AVX512: return &moe_gemm_avx512;
    case MOE_SIMD_AVX2: return &moe_gemm_avx2;
    default: return &moe_gemm_scalar;
    }
}

static moe_gemm_kernel kernel_of(const moe_gemm_kernels *k, moe_dtype dt) {
    switch (dt) {
    case MOE_F32: return k->f32;
    case MOE_BF16: return k->bf16;
    case MOE_F16: return k->f16;
    default: return NULL;
    }
}

/* The best kernel at or below the current SIMD level (a level may leave a dtype to the one below). */
moe_gemm_kernel moe_gemm_pick(moe_dtype dt) {
    if (moe_dtype_is_quant(dt)) return moe_qgemm_pick(dt); /* quantized dtypes: core/quant.c */
    for (int s = moe_simd_level(); s >= MOE_SIMD_SCALAR; s--) {
        moe_gemm_kernel k = kernel_of(moe_gemm_kernels_for((moe_simd)s), dt);
        if (k) return k;
    }
    return NULL;
}

void moe_matmul_ld(float *y, size_t ldy, const float *x, size_t ldx, int n, moe_dtype dt, const void *w,
                   int out, int in) {
    /* quantized dtypes have their own kernels and dispatch (core/quant.c) */
    if (moe_dtype_is_quant(dt)) { moe_qmatmul_ld(y, ldy, x, ldx, n, dt, w, out, in); return; }
    moe_gemm_kernel k = moe_gemm_pick(dt);
    if (!k || n <= 0 || out <= 0) return;
    /* Split output columns in blocks of 16 rows of W; small products stay on one thread. */
    double work = (double)n * out * in;
    int nth = omp_in_parallel() || work < 65536 ? 1 : omp_get_max_threads();
    if (nth <= 1) { k(y, ldy, x, ldx, n, w, in, 0, out); return; }
    int blocks = (out + 15) / 16;
    #pragma omp parallel num_threads(nth)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        int b0 = (int)((long)blocks * id / nt), b1 = (int)((long)blocks * (id + 1) / nt);
        int o0 = b0 * 16, o1 = b1 * 16 < out ? b1 * 16 : out;
        if (o0 < o1) k(y, ldy, x, ldx, n, w, in, o0, o1);
    }
}

void moe_matmul(float *y, const float *x, int n, moe_dtype dt, const void *w, int out, int in) {
    moe_matmul_ld(y, (size_t)out, x, (size_t)in, n, dt, w, out, in);
}
