/* matmul.h - dense products against weight matrices stored as [out][in] (the nn.Linear layout) in
 * any type of the dtype table (core/dtype_traits.h). The activations are always f32. Each SIMD level
 * provides one kernel per dtype that computes a block of output columns; moe_matmul splits the
 * columns across threads.
 * The scalar kernels are the oracles for the SIMD ones (tests/unit/test_matmul.c). */
#ifndef MOE_CORE_MATMUL_H
#define MOE_CORE_MATMUL_H
#include <stddef.h>
#include "core/cpu.h"
#include "core/dtype.h"

/* y[t*ldy + o] = sum_i x[t*ldx + i] * W[o*in + i]   for t in [0,n), o in [o0,o1) */
typedef void (*moe_gemm_kernel)(float *y, size_t ldy, const float *x, size_t ldx, int n,
                                const void *w, int in, int o0, int o1);

/* The kernels of the plain float types at each SIMD level (the scalar ones are the oracles of the
 * others); the dtype table (core/dtype_traits.h) says which serves which type and level. */
#define MOE_GEMM_DECLARE(isa)                                                                            \
    void moe_gemm_f32_##isa(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, \
                            int o0, int o1);                                                              \
    void moe_gemm_bf16_##isa(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, \
                             int o0, int o1);                                                             \
    void moe_gemm_f16_##isa(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, \
                            int o0, int o1);
MOE_GEMM_DECLARE(scalar)
MOE_GEMM_DECLARE(avx2)
MOE_GEMM_DECLARE(avx512)

/* The best single-threaded kernel for a dtype at the current SIMD level (NULL if none), for callers
 * that schedule many small products themselves (the MoE layer runs all experts in one region).
 * Splitting a product's rows [o0,o1) at multiples of 48 keeps its results bit-identical to one call
 * over all rows (48 is a multiple of every tile height); other splits may differ in the last bits. */
moe_gemm_kernel moe_gemm_pick(moe_dtype dt);

/* Y[n][out] = X[n][in] . W^T, using all threads unless already inside a parallel region or the
 * product is small (< 2^18 multiply-adds). Output columns are split between threads in blocks of 48,
 * which keeps results bit-identical whatever the thread count. */
void moe_matmul(float *y, const float *x, int n, moe_dtype dt, const void *w, int out, int in);
/* Same with explicit leading dimensions. */
void moe_matmul_ld(float *y, size_t ldy, const float *x, size_t ldx, int n, moe_dtype dt, const void *w,
                   int out, int in);

/* One product of a batch: y[t*ldy + o] = sum_i x[t*ldx + i] * W[o][i], t < n, o < out. */
typedef struct moe_matmul_job {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    int n;
    moe_dtype dt;
    const void *w;
    int out, in;
} moe_matmul_job;

/* All jobs in one parallel region, for the many small products of a MoE layer (the gate and up
 * projections of every active expert, then their down projections). The jobs' estimated costs
 * (bytes of W for decode, FLOPs for prefill) are laid end to end and cut into one equal share per
 * thread, at 48-column boundaries, so small products run side by side instead of each paying a
 * fork/join and being split across all threads. The y blocks of different jobs must not overlap.
 * Results are bit-identical to moe_matmul_ld on each job, whatever the thread count. */
void moe_matmul_many(const moe_matmul_job *jobs, int n_jobs);
#endif
