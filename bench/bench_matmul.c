/* bench_matmul.c - how far the dense product kernels are from this machine's limits.
 *
 * It measures the two limits itself: memory read bandwidth (a streaming vector-load loop over a
 * 1 GiB buffer, 1 and 2 threads) and the FMA peak (independent FMA chains on registers only).
 * Then it times moe_matmul:
 *   - decode (n = 1..4 x rows): bytes of W read per second, as a % of the read bandwidth with the
 *     same thread count, and against OpenBLAS cblas_sgemv on an f32 copy of W (n = 1);
 *   - the decode step of a MoE layer (8 experts), moe_matmul per product vs moe_matmul_many;
 *   - prefill (n = 512, and n = 64 / 8 as experts see in MoE prefill): GFLOP/s, as a % of the FMA
 *     peak, and against OpenBLAS cblas_sgemm with the same thread count on the same f32 values (for
 *     bf16 weights the peer multiplies an f32 copy of W, which our kernel never makes).
 * Small matrices (a Qwen3-30B expert is 3 MiB in bf16) are cycled through enough copies to exceed
 * the L3 cache, so that every call reads W from memory as a real decode step does.
 *
 * The development machine is a shared VM whose speed changes by 2x within seconds, so every
 * comparison is interleaved: each repetition runs the yardstick (stream, FMA loop or OpenBLAS) and
 * our kernel back to back, and each side keeps its best time over the repetitions. The % columns
 * divide those two bests; the machine-limits table shows the best over the whole run.
 * Our result is checked against the peer's so that the timed code computes the product named.
 *
 * Usage: bench_matmul [--quick] [--threads N]   (markdown tables on stdout; see bench/run_matmul.sh) */
#include "core/alloc.h"
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/matmul.h"
#include "core/ops.h"
#include "moe.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef MOE_HAVE_OPENBLAS
#include <cblas.h>
#endif

static int g_quick, g_max_threads = 2;
static volatile double g_sink;   /* keeps the measured loops' results alive */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- machine limits ---- */

__attribute__((target("avx2"))) static float read_avx2(const float *p, size_t nf) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 32 <= nf; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(p + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(p + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(p + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

static float read_scalar(const float *p, size_t nf) {
    float s = 0;
    for (size_t i = 0; i < nf; i += 16) s += p[i];   /* one load per cache line is enough to stream */
    return s;
}

static float *g_stream;                    /* the 1 GiB buffer of the bandwidth probe */
static const size_t g_stream_bytes = (size_t)1 << 30;
static double g_bw_best[3], g_peak_best[3];  /* best of the run, by thread count */

/* Best-of-reps read bandwidth (GB/s) over `bytes` with nt threads, each reading its own contiguous part. */
static double read_bandwidth(const float *buf, size_t bytes, int nt, int reps) {
    size_t nf = bytes / 4;
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        float part = 0;
        #pragma omp parallel num_threads(nt) reduction(+ : part)
        {
            int id = omp_get_thread_num(), n = omp_get_num_threads();
            size_t a = nf / n * id & ~(size_t)31, e = id == n - 1 ? nf : nf / n * (id + 1) & ~(size_t)31;
            part += moe_simd_detect() >= MOE_SIMD_AVX2 ? read_avx2(buf + a, e - a) : read_scalar(buf + a, e - a);
        }
        double dt = now() - t0;
        g_sink += part;
        if (dt < best) best = dt;
    }
    double gbs = bytes / best / 1e9;
    if (gbs > g_bw_best[nt]) g_bw_best[nt] = gbs;
    return gbs;
}
static double stream_once(int nt) { return read_bandwidth(g_stream, g_stream_bytes, nt, 1); }

/* FMAs on 12 independent register chains: 12 * 8 lanes * 2 flops per iteration. The chains are
 * named variables (an array would be kept in memory) and the empty asm keeps them in registers and
 * opaque to the optimiser. */
__attribute__((target("avx2,fma"))) static double fma_avx2(long iters) {
    __m256 m = _mm256_set1_ps(0.99999f), c = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2), a3 = _mm256_set1_ps(3);
    __m256 a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5), a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7);
    __m256 a8 = _mm256_set1_ps(8), a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    for (long i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),
                         "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0];
}

/* The same on 24 zmm chains (only called where AVX-512 is usable). */
__attribute__((target("avx512f"))) static double fma_avx512(long iters) {
    __m512 m = _mm512_set1_ps(0.99999f), c = _mm512_set1_ps(1e-6f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2), a3 = _mm512_set1_ps(3);
    __m512 a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5), a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7);
    __m512 a8 = _mm512_set1_ps(8), a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    __m512 b0 = a0, b1 = a1, b2 = a2, b3 = a3, b4 = a4, b5 = a5, b6 = a6, b7 = a7, b8 = a8, b9 = a9, b10 = a10, b11 = a11;
    for (long i = 0; i < iters; i++) {
        a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
        b0 = _mm512_fmadd_ps(b0, m, c); b1 = _mm512_fmadd_ps(b1, m, c); b2 = _mm512_fmadd_ps(b2, m, c);
        b3 = _mm512_fmadd_ps(b3, m, c); b4 = _mm512_fmadd_ps(b4, m, c); b5 = _mm512_fmadd_ps(b5, m, c);
        b6 = _mm512_fmadd_ps(b6, m, c); b7 = _mm512_fmadd_ps(b7, m, c); b8 = _mm512_fmadd_ps(b8, m, c);
        b9 = _mm512_fmadd_ps(b9, m, c); b10 = _mm512_fmadd_ps(b10, m, c); b11 = _mm512_fmadd_ps(b11, m, c);
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                         "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
        __asm__ volatile("" : "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3), "+v"(b4), "+v"(b5), "+v"(b6), "+v"(b7),
                         "+v"(b8), "+v"(b9), "+v"(b10), "+v"(b11));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)),
                                       _mm512_add_ps(_mm512_add_ps(b4, b5), _mm512_add_ps(b6, b7))));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(b8, b9), _mm512_add_ps(b10, b11)));
    return _mm512_reduce_add_ps(s);
}

/* Peak GFLOP/s over nt threads (each runs the same loop; total flops / wall time), best of reps. */
static double fma_peak(int nt, int wide, long iters, int reps) {
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now(), part = 0;
        #pragma omp parallel num_threads(nt) reduction(+ : part)
        part += wide ? fma_avx512(iters) : fma_avx2(iters);
        double dt = now() - t0;
        g_sink += part;
        if (dt < best) best = dt;
    }
    double flops = (double)iters * nt * (wide ? 24 * 16 * 2 : 12 * 8 * 2);
    double gf = flops / best / 1e9;
    if (!wide && gf > g_peak_best[nt]) g_peak_best[nt] = gf;
    return gf;
}
/* One short probe (~0.1 s) of the AVX2 FMA peak, the yardstick of the prefill rows. */
static double peak_once(int nt) { return fma_peak(nt, 0, 10000000, 1); }

/* ---- problems ---- */

static uint64_t g_rng = 7;
static float rfloat(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 16777216.0)) - 0.5f;
}

typedef struct {
    moe_dtype dt;
    int out, in, copies;    /* copies: distinct matrices cycled so that W never sits in cache */
    void **w;
    float **wf;             /* f32 copies for the peer (only for bf16/f16 when the peer runs) */
} problem;

static void *make_matrix(moe_dtype dt, int out, int in) {
    size_t cnt = (size_t)out * in;
    void *w = moe_alloc(cnt * moe_dtype_size(dt));
    if (!w) { fprintf(stderr, "bench_matmul: out of memory for a %dx%d matrix\n", out, in); exit(2); }
    for (size_t i = 0; i < cnt; i++) {
        float f = rfloat();
        if (dt == MOE_F32) ((float *)w)[i] = f;
        else if (dt == MOE_BF16) ((uint16_t *)w)[i] = moe_f32_to_bf16(f);
        else ((uint16_t *)w)[i] = moe_f32_to_f16(f);
    }
    return w;
}

static problem make_problem(moe_dtype dt, int out, int in, int with_f32_copy) {
    problem p = {dt, out, in, 1, NULL, NULL};
    size_t bytes = (size_t)out * in * moe_dtype_size(dt);
    const size_t l3x2 = (size_t)96 << 20;   /* comfortably beyond a 32 MiB L3 */
    if (bytes < l3x2) p.copies = (int)((l3x2 + bytes - 1) / bytes);
    p.w = calloc((size_t)p.copies, sizeof(void *));
    for (int c = 0; c < p.copies; c++) p.w[c] = make_matrix(dt, out, in);
    if (with_f32_copy && dt != MOE_F32) {
        p.wf = calloc((size_t)p.copies, sizeof(float *));
        for (int c = 0; c < p.copies; c++) {
            p.wf[c] = moe_alloc((size_t)out * in * 4);
            moe_to_f32(dt, p.w[c], p.wf[c], (size_t)out * in);
        }
    }
    return p;
}

static void free_problem(problem *p) {
    for (int c = 0; c < p->copies; c++) {
        moe_free(p->w[c]);
        if (p->wf) moe_free(p->wf[c]);
    }
    free(p->w);
    free(p->wf);
}

static const float *peer_w(const problem *p, int c) { return p->wf ? p->wf[c] : (const float *)p->w[c]; }

/* Seconds per product over `calls` products cycling over the copies (one repetition). */
static double time_ours(const problem *p, float *y, const float *x, int n, int nt, int calls) {
    moe_set_threads(nt);
    double t0 = now();
    for (int k = 0; k < calls; k++) moe_matmul(y, x, n, p->dt, p->w[k % p->copies], p->out, p->in);
    return (now() - t0) / calls;
}

#ifdef MOE_HAVE_OPENBLAS
static double time_peer(const problem *p, float *y, const float *x, int n, int nt, int calls) {
    openblas_set_num_threads(nt);
    double t0 = now();
    for (int k = 0; k < calls; k++) {
        const float *w = peer_w(p, k % p->copies);
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, p->out, p->in, 1.0f, w, p->in, x, 1, 0.0f, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, p->out, p->in, 1.0f, x, p->in, w, p->in,
                        0.0f, y, p->out);
    }
    double t = (now() - t0) / calls;
    if (nt > 1) usleep(150000);   /* let OpenBLAS's spinning workers sleep before our threads run */
    return t;
}
#endif

static double min2(double a, double b) { return a < b ? a : b; }
static double max2(double a, double b) { return a > b ? a : b; }
static int reps(void) { return g_quick ? 2 : 5; }

/* Largest |ours - peer| relative to the largest |peer|: the two must compute the same product. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

static void bench_gemv(const char *label, moe_dtype dt, int out, int in, const int *ns, int nns) {
    problem p = make_problem(dt, out, in, 1);
    float *x = moe_alloc((size_t)4 * in * 4), *y = moe_alloc((size_t)4 * out * 4), *yp = moe_alloc((size_t)4 * out * 4);
    for (size_t i = 0; i < (size_t)4 * in; i++) x[i] = rfloat();
    double mb = (double)out * in * moe_dtype_size(dt);
    int calls = (int)fmax(2, fmin(100, 4e8 / mb));
    for (int a = 0; a < nns; a++) {
        int n = ns[a];
        for (int nt = 1; nt <= g_max_threads; nt++) {
            double t = 1e30, tp = 1e30, bw = 0;
            for (int r = 0; r < reps(); r++) {
                bw = max2(bw, stream_once(nt));
                t = min2(t, time_ours(&p, y, x, n, nt, calls));
#ifdef MOE_HAVE_OPENBLAS
                if (n == 1) tp = min2(tp, time_peer(&p, yp, x, 1, nt, calls));
#endif
            }
            double gbs = mb / t / 1e9;
            printf("| %s | %s | %d | %d | %.1f | %.3f | %.1f | %.1f | %.0f%% | %.1f |", label, moe_dtype_name(dt), n, nt,
                   mb / 1e6, t * 1e3, gbs, bw, 100 * gbs / bw, 2.0 * n * out * in / t / 1e9);
#ifdef MOE_HAVE_OPENBLAS
            if (n == 1) {
                moe_matmul(y, x, 1, dt, p.w[(calls - 1) % p.copies], out, in);
                printf(" %.1f | %.2f | %.1e |\n", (double)out * in * 4 / tp / 1e9, tp / t, rel_diff(y, yp, (size_t)out));
            } else
#endif
                printf(" - | - | - |\n");
            fflush(stdout);
        }
    }
    moe_free(x); moe_free(y); moe_free(yp);
    free_problem(&p);
}

static void bench_gemm(const char *label, moe_dtype dt, int out, int in, int n) {
    problem p = make_problem(dt, out, in, 1);
    float *x = moe_alloc((size_t)n * in * 4), *y = moe_alloc((size_t)n * out * 4), *yp = moe_alloc((size_t)n * out * 4);
    for (size_t i = 0; i < (size_t)n * in; i++) x[i] = rfloat();
    double flops = 2.0 * n * out * in;
    int calls = (int)fmax(1, fmin(100, 2e9 / flops));
    for (int nt = 1; nt <= g_max_threads; nt++) {
        double t = 1e30, tp = 1e30, peak = 0;
        for (int r = 0; r < reps(); r++) {
            peak = max2(peak, peak_once(nt));
            t = min2(t, time_ours(&p, y, x, n, nt, calls));
#ifdef MOE_HAVE_OPENBLAS
            tp = min2(tp, time_peer(&p, yp, x, n, nt, calls));
#endif
        }
        printf("| %s | %s | %d | %d | %.2f | %.1f | %.1f | %.0f%% |", label, moe_dtype_name(dt), n, nt, t * 1e3,
               flops / t / 1e9, peak, 100 * flops / t / 1e9 / peak);
#ifdef MOE_HAVE_OPENBLAS
        moe_matmul(y, x, n, dt, p.w[(calls - 1) % p.copies], out, in);
        printf(" %.1f | %.2f | %.1e |\n", flops / tp / 1e9, tp / t, rel_diff(y, yp, (size_t)n * out));
#else
        printf(" - | - | - |\n");
#endif
        fflush(stdout);
    }
    moe_free(x); moe_free(y); moe_free(yp);
    free_problem(&p);
}

/* One decode step of a Qwen3-30B-A3B MoE layer: 8 of the experts (gate and up 768x2048, down
 * 2048x768, bf16) applied to one token, experts drawn from a pool larger than L3. Either as the
 * layer does it today (moe_matmul per product: 24 fork/joins) or batched with moe_matmul_many (two
 * parallel regions: all gate+up products, then all downs). */
static void bench_moe_decode(void) {
    enum { POOL = 40, ACTIVE = 8, D = 2048, FF = 768 };
    void *gate[POOL], *up[POOL], *down[POOL];
    for (int e = 0; e < POOL; e++) {
        gate[e] = make_matrix(MOE_BF16, FF, D);
        up[e] = make_matrix(MOE_BF16, FF, D);
        down[e] = make_matrix(MOE_BF16, D, FF);
    }
    float *x = moe_alloc(D * 4), *hg = moe_alloc((size_t)ACTIVE * FF * 4), *hu = moe_alloc((size_t)ACTIVE * FF * 4);
    float *y = moe_alloc((size_t)ACTIVE * D * 4), *y2 = moe_alloc((size_t)ACTIVE * D * 4);
    for (int i = 0; i < D; i++) x[i] = rfloat();
    double bytes = (double)ACTIVE * 3 * FF * D * 2;
    int steps = g_quick ? 10 : 40;
    for (int nt = 1; nt <= g_max_threads; nt++) {
        moe_set_threads(nt);
        double best_loop = 1e30, best_many = 1e30, bw = 0;
        for (int rep = 0; rep < reps(); rep++) {
            bw = max2(bw, stream_once(nt));
            moe_set_threads(nt);
            double t0 = now();
            for (int s = 0; s < steps; s++)
                for (int a = 0; a < ACTIVE; a++) {
                    int e = (s * ACTIVE + a) % POOL;
                    moe_matmul(hg + a * FF, x, 1, MOE_BF16, gate[e], FF, D);
                    moe_matmul(hu + a * FF, x, 1, MOE_BF16, up[e], FF, D);
                    moe_silu_mul(hg + a * FF, hu + a * FF, FF);
                    moe_matmul(y + a * D, hg + a * FF, 1, MOE_BF16, down[e], D, FF);
                }
            double t = (now() - t0) / steps;
            if (t < best_loop) best_loop = t;
            t0 = now();
            for (int s = 0; s < steps; s++) {
                moe_matmul_job jobs[2 * ACTIVE];
                for (int a = 0; a < ACTIVE; a++) {
                    int e = (s * ACTIVE + a) % POOL;
                    jobs[2 * a] = (moe_matmul_job){hg + a * FF, FF, x, D, 1, MOE_BF16, gate[e], FF, D};
                    jobs[2 * a + 1] = (moe_matmul_job){hu + a * FF, FF, x, D, 1, MOE_BF16, up[e], FF, D};
                }
                moe_matmul_many(jobs, 2 * ACTIVE);
                moe_silu_mul(hg, hu, (size_t)ACTIVE * FF);
                for (int a = 0; a < ACTIVE; a++) {
                    int e = (s * ACTIVE + a) % POOL;
                    jobs[a] = (moe_matmul_job){y2 + a * D, D, hg + a * FF, FF, 1, MOE_BF16, down[e], D, FF};
                }
                moe_matmul_many(jobs, ACTIVE);
            }
            t = (now() - t0) / steps;
            if (t < best_many) best_many = t;
        }
        printf("| 8 experts x (gate, up, down) bf16, n=1 | %d | %.1f | %.3f | %.1f | %.0f%% | %.3f | %.1f | %.0f%% | %.2f | %.1e |\n",
               nt, bw, best_loop * 1e3, bytes / best_loop / 1e9, 100 * bytes / best_loop / 1e9 / bw, best_many * 1e3,
               bytes / best_many / 1e9, 100 * bytes / best_many / 1e9 / bw, best_loop / best_many,
               rel_diff(y2, y, (size_t)ACTIVE * D));
        fflush(stdout);
    }
    for (int e = 0; e < POOL; e++) {
        moe_free(gate[e]); moe_free(up[e]); moe_free(down[e]);
    }
    moe_free(x); moe_free(hg); moe_free(hu); moe_free(y); moe_free(y2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g_quick = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) g_max_threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_matmul [--quick] [--threads N]\n");
            return 1;
        }
    }
    if (g_max_threads < 1 || g_max_threads > 2) g_max_threads = 2;
    const char *lvl = moe_simd_name();
    printf("SIMD level in use: %s (detected %d); OpenMP max threads %d", lvl, (int)moe_simd_detect(), omp_get_max_threads());
#ifdef MOE_HAVE_OPENBLAS
    printf("; OpenBLAS core %s", openblas_get_corename());
#endif
    printf("\n");
    g_stream = moe_alloc(g_stream_bytes);
    if (!g_stream) { fprintf(stderr, "bench_matmul: cannot allocate 1 GiB\n"); return 2; }
    #pragma omp parallel for num_threads(2)
    for (size_t i = 0; i < g_stream_bytes / 4; i++) g_stream[i] = (float)(i & 255);
    for (int nt = 1; nt <= 2; nt++) {
        read_bandwidth(g_stream, g_stream_bytes, nt, 3);
        if (moe_simd_detect() >= MOE_SIMD_AVX2) fma_peak(nt, 0, g_quick ? 20000000 : 50000000, 3);
    }
    printf("\n## Decode (GEMV): W read once per call\n\n"
           "| shape (out x in) | W | n | threads | W MB | ms/call | GB/s | read BW GB/s | %% of read BW | GFLOP/s | OpenBLAS sgemv GB/s (f32 copy) | speedup vs sgemv | rel. diff |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    const int n1[] = {1}, n14[] = {1, 2, 4};
    bench_gemv("Mixtral w1 14336x4096", MOE_BF16, 14336, 4096, n14, 3);
    bench_gemv("Mixtral w1 14336x4096", MOE_F32, 14336, 4096, n1, 1);
    bench_gemv("Mixtral w2 4096x14336", MOE_BF16, 4096, 14336, n1, 1);
    bench_gemv("Mixtral w1 14336x4096", MOE_F16, 14336, 4096, n1, 1);
    bench_gemv("Qwen3-30B expert up 768x2048", MOE_BF16, 768, 2048, n1, 1);
    bench_gemv("Qwen3-30B expert down 2048x768", MOE_BF16, 2048, 768, n1, 1);
    bench_gemv("Qwen3-30B expert up 768x2048", MOE_F32, 768, 2048, n1, 1);
    bench_gemv("Qwen3-30B head 151936x2048", MOE_BF16, 151936, 2048, n1, 1);
    if (!g_quick) bench_gemv("Qwen3-30B head 151936x2048", MOE_F32, 151936, 2048, n1, 1);

    printf("\n## MoE decode step: per-product moe_matmul vs batched moe_matmul_many\n\n"
           "| workload | threads | read BW GB/s | loop ms | loop GB/s | loop %% of BW | many ms | many GB/s | many %% of BW | speedup | rel. diff |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    bench_moe_decode();

    printf("\n## Prefill (GEMM)\n\n"
           "| shape (out x in) | W | n | threads | ms/call | GFLOP/s | FMA peak GFLOP/s | %% of peak | OpenBLAS sgemm GFLOP/s | speedup vs sgemm | rel. diff |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    bench_gemm("Mixtral w1 14336x4096", MOE_F32, 14336, 4096, g_quick ? 128 : 512);
    bench_gemm("Mixtral w1 14336x4096", MOE_BF16, 14336, 4096, g_quick ? 128 : 512);
    bench_gemm("Qwen3-30B expert up 768x2048", MOE_F32, 768, 2048, 512);
    bench_gemm("Qwen3-30B expert up 768x2048", MOE_BF16, 768, 2048, 512);
    bench_gemm("Qwen3-30B expert down 2048x768", MOE_BF16, 2048, 768, 512);
    bench_gemm("Qwen3-30B expert up 768x2048", MOE_BF16, 768, 2048, 64);
    bench_gemm("Qwen3-30B expert up 768x2048", MOE_BF16, 768, 2048, 8);

    printf("\n## Machine limits (best seen over the whole run)\n\n| measure | 1 thread | 2 threads |\n|---|---|---|\n");
    printf("| read bandwidth, 1 GiB stream (GB/s) | %.1f | %.1f |\n", g_bw_best[1], g_bw_best[2]);
    if (moe_simd_detect() >= MOE_SIMD_AVX2)
        printf("| FMA peak, AVX2 8-lane (GFLOP/s) | %.1f | %.1f |\n", g_peak_best[1], g_peak_best[2]);
    if (moe_simd_detect() >= MOE_SIMD_AVX512)
        printf("| FMA peak, AVX-512 16-lane (GFLOP/s) | %.1f | %.1f |\n", fma_peak(1, 1, 50000000, 3), fma_peak(2, 1, 50000000, 3));
    moe_free(g_stream);
    return 0;
}
