/* matmul.c - the scalar kernels (the test oracles of matmul_tmpl.h's SIMD kernels), the choice of
 * kernel by SIMD level, and the split of products between OpenMP threads.
 *
 * Threads split output columns (rows of W) in fixed blocks, never the `in` dimension: each output
 * stays one thread's private sum, so results are bit-identical for any thread count and no
 * reduction is needed. moe_matmul forks once per product; moe_matmul_many forks once for a whole
 * batch of products (the experts of a MoE layer), which matters when each product is only a few
 * hundred microseconds of work and a fork/join costs tens of microseconds. */
#include "core/matmul.h"
#include "core/dtype_traits.h"
#include "core/quant.h"
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

void moe_gemm_f32_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0,
                         int o1) {
    const float *W = w;
    for (int t = 0; t < n; t++)
        for (int o = o0; o < o1; o++) {
            const float *wr = W + (size_t)o * in, *xr = x + t * ldx;
            float s = 0;
            for (int i = 0; i < in; i++) s += xr[i] * wr[i];
            y[t * ldy + o] = s;
        }
}

void moe_gemm_bf16_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0,
                          int o1) {
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

void moe_gemm_f16_scalar(float *y, size_t ldy, const float *x, size_t ldx, int n, const void *w, int in, int o0,
                         int o1) {
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

/* The best kernel at or below the current SIMD level (a level may leave a dtype to the one below). */
moe_gemm_kernel moe_gemm_pick(moe_dtype dt) { return moe_dtype_gemm(dt, moe_simd_level()); }

/* Columns are handed out in blocks of this many rows of W: a multiple of every kernel's tile height
 * (1, 2, 3, 4; matmul_shapes.h), so that a split never changes which instructions compute an output
 * (results do not depend on the thread count), and of 16 floats (64 bytes), so that threads never
 * write the same cache line of a y row (when y rows are 64-byte aligned). */
#define COL_BLOCK 48

/* Relative cost of a job: decode streams W (bytes at ~30 GB/s), prefill is bound by FMAs (~100
 * GFLOP/s per core); only ratios between jobs matter. */
static double job_cost(const moe_matmul_job *j) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(j->dt);
    double mem = (double)tr->block_bytes / tr->block / 30.0, flop = 2.0 * j->n / 100.0;
    return (double)j->out * j->in * (mem > flop ? mem : flop) + 1.0;
}

/* Threads to use for `work` multiply-adds: one inside a parallel region, or for products too small
 * to repay a fork/join (2^18 multiply-adds is ~20-100 us of work; waking a sleeping worker costs
 * 5-30 us on the development VM). */
static int threads_for(double work) {
    return omp_in_parallel() || work < (double)(1 << 18) ? 1 : omp_get_max_threads();
}

void moe_matmul_ld(float *y, size_t ldy, const float *x, size_t ldx, int n, moe_dtype dt, const void *w,
                   int out, int in) {
    /* types whose kernels take int8 activations quantize x once for all threads (core/quant.c) */
    if (moe_dtype_qgemm(dt, MOE_SIMD_SCALAR)) { moe_qmatmul_ld(y, ldy, x, ldx, n, dt, w, out, in); return; }
    moe_gemm_kernel k = moe_gemm_pick(dt);
    if (!k || n <= 0 || out <= 0) return;
    int nth = threads_for((double)n * out * in);
    if (nth <= 1) { k(y, ldy, x, ldx, n, w, in, 0, out); return; }
    int blocks = (out + COL_BLOCK - 1) / COL_BLOCK;
    #pragma omp parallel num_threads(nth)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        int b0 = (int)((long)blocks * id / nt), b1 = (int)((long)blocks * (id + 1) / nt);
        int o0 = b0 * COL_BLOCK, o1 = b1 * COL_BLOCK < out ? b1 * COL_BLOCK : out;
        if (o0 < o1) k(y, ldy, x, ldx, n, w, in, o0, o1);
    }
}

void moe_matmul(float *y, const float *x, int n, moe_dtype dt, const void *w, int out, int in) {
    moe_matmul_ld(y, (size_t)out, x, (size_t)in, n, dt, w, out, in);
}

/* Thread `id` of `nt` runs the columns of every job whose cost falls in its share
 * [total*id/nt, total*(id+1)/nt) of the jobs' costs laid end to end. A job's columns are cut at
 * COL_BLOCK boundaries: block b of job j belongs to the thread whose share holds the cost at the
 * block's start, so every block has exactly one owner. */
static void run_share(const moe_matmul_job *jobs, int n_jobs, const double *start, double total, int id, int nt) {
    double lo = total * id / nt, hi = total * (id + 1) / nt;
    for (int j = 0; j < n_jobs; j++) {
        const moe_matmul_job *jb = &jobs[j];
        double c0 = start[j], c1 = start[j + 1];
        if (c1 <= lo || c0 >= hi || jb->n <= 0 || jb->out <= 0) continue;
        int blocks = (jb->out + COL_BLOCK - 1) / COL_BLOCK;
        double per = (c1 - c0) / blocks;
        /* first block whose start cost is >= lo (the one before belongs to the previous share) */
        int b0 = lo <= c0 ? 0 : (int)ceil((lo - c0) / per - 1e-9);
        int b1 = hi >= c1 ? blocks : (int)ceil((hi - c0) / per - 1e-9);
        if (id == nt - 1) b1 = blocks;
        if (b0 < 0) b0 = 0;
        if (b1 > blocks) b1 = blocks;
        if (b0 >= b1) continue;
        int o0 = b0 * COL_BLOCK, o1 = b1 * COL_BLOCK < jb->out ? b1 * COL_BLOCK : jb->out;
        moe_gemm_kernel k = moe_gemm_pick(jb->dt);
        if (k) k(jb->y, jb->ldy, jb->x, jb->ldx, jb->n, jb->w, jb->in, o0, o1);
    }
}

void moe_matmul_many(const moe_matmul_job *jobs, int n_jobs) {
    if (n_jobs <= 0) return;
    double stack_start[65], *start = n_jobs < 65 ? stack_start : malloc(sizeof(double) * ((size_t)n_jobs + 1));
    if (!start) { /* no memory for the plan: run the jobs one by one */
        for (int j = 0; j < n_jobs; j++)
            moe_matmul_ld(jobs[j].y, jobs[j].ldy, jobs[j].x, jobs[j].ldx, jobs[j].n, jobs[j].dt, jobs[j].w,
                          jobs[j].out, jobs[j].in);
        return;
    }
    double work = 0;
    start[0] = 0;
    for (int j = 0; j < n_jobs; j++) {
        start[j + 1] = start[j] + (jobs[j].n > 0 && jobs[j].out > 0 ? job_cost(&jobs[j]) : 0);
        work += jobs[j].n > 0 && jobs[j].out > 0 ? (double)jobs[j].n * jobs[j].out * jobs[j].in : 0;
    }
    double total = start[n_jobs];
    int nth = threads_for(work);
    if (nth <= 1) {
        run_share(jobs, n_jobs, start, total, 0, 1);
    } else {
        #pragma omp parallel num_threads(nth)
        run_share(jobs, n_jobs, start, total, omp_get_thread_num(), omp_get_num_threads());
    }
    if (start != stack_start) free(start);
}
