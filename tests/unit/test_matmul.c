/* test_matmul.c - every SIMD gemm kernel the CPU can run, for every dtype, against the scalar twin.
 *
 * Shapes cover both paths of the kernels (decode n < 8, blocked prefill n >= 8) and their ragged
 * edges: `in` not a multiple of the vector width or of the KC block, `out` not a multiple of the
 * 4-row tiles, n across the micro-tile heights and the MC block, leading dimensions wider than the
 * rows, and [o0,o1) sub-ranges. Buffers are allocated to their exact extent (x ends at the last
 * row's `in`-th element, W at out*in) so the sanitizer build catches any read past them, and y is
 * filled with a sentinel that must survive outside the rows and columns the kernel owns.
 * Tolerance: |y - ref| <= 1e-5 * sum_i |x_i w_i| + 1e-30 per element (summation order differs).
 * Seeds: a fixed list, plus one fresh seed per run (printed; MOE_TEST_SEED=N replays it).
 * Besides the levels the CPU runs, "emu16" is the AVX-512 logic over a 16-lane AVX2 emulation
 * (tests/unit/emu16_kernels.h), so the AVX-512 tile shapes and tails are tested on AVX2 machines. */
#include "core/cpu.h"
#include "core/dtype.h"
#include "core/dtype_traits.h"
#include "core/matmul.h"
#include "moe.h"
#include "unit/emu16_kernels.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "unit/testrand.h"

static int g_fail, g_checks;

static const char *dt_name(moe_dtype dt) { return moe_dtype_name(dt); }
static float w_at(moe_dtype dt, const void *w, size_t i) {
    if (dt == MOE_F32) return ((const float *)w)[i];
    if (dt == MOE_BF16) return moe_bf16_to_f32(((const uint16_t *)w)[i]);
    return moe_f16_to_f32(((const uint16_t *)w)[i]);
}
#define LVL_EMU16 3   /* pseudo-level: the AVX-512 logic on the AVX2 emulation */
static const char *level_name(int s) {
    return s == LVL_EMU16 ? "emu16" : s == MOE_SIMD_AVX512 ? "avx512" : s == MOE_SIMD_AVX2 ? "avx2" : "scalar";
}
/* The kernel of exactly this level (NULL if the table leaves the level to the one below). */
static moe_gemm_kernel kernel_at(int lvl, moe_dtype dt) {
    return lvl == LVL_EMU16 ? emu16_gemm[dt] : moe_dtype_traits_of(dt)->gemm[lvl];
}

static void *random_weights(moe_dtype dt, size_t count) {
    size_t es = moe_dtype_size(dt);
    void *w = malloc(count ? count * es : 1);
    for (size_t i = 0; i < count; i++) {
        float f = rfloat();
        if (dt == MOE_F32) ((float *)w)[i] = f;
        else if (dt == MOE_BF16) ((uint16_t *)w)[i] = moe_f32_to_bf16(f);
        else ((uint16_t *)w)[i] = moe_f32_to_f16(f);
    }
    return w;
}

#define SENTINEL 12345.678f

/* One case: kernel k of level `lvl` on a fresh random problem, compared with the scalar kernel. */
static void check_case(int lvl, moe_dtype dt, int n, int in, int out, int o0, int o1, size_t ldx, size_t ldy) {
    moe_gemm_kernel k = kernel_at(lvl, dt);
    moe_gemm_kernel ref = kernel_at(MOE_SIMD_SCALAR, dt);
    if (!k) return;
    size_t xn = (size_t)(n - 1) * ldx + (size_t)in, yn = (size_t)(n - 1) * ldy + (size_t)out;
    float *x = malloc((xn ? xn : 1) * sizeof(float));
    float *y = malloc(yn * sizeof(float)), *yr = malloc(yn * sizeof(float));
    void *w = random_weights(dt, (size_t)out * in);
    for (size_t i = 0; i < xn; i++) x[i] = rfloat();
    for (size_t i = 0; i < yn; i++) y[i] = yr[i] = SENTINEL;
    k(y, ldy, x, ldx, n, w, in, o0, o1);
    ref(yr, ldy, x, ldx, n, w, in, o0, o1);
    int bad = 0;
    for (int t = 0; t < n && bad < 3; t++)
        for (size_t o = 0; o < (t == n - 1 ? (size_t)out : ldy) && bad < 3; o++) {
            size_t at = (size_t)t * ldy + o;
            int owned = (int)o >= o0 && (int)o < o1;
            g_checks++;
            if (!owned) {
                if (memcmp(&y[at], &yr[at], sizeof(float)) != 0 || y[at] != SENTINEL) {
                    printf("FAIL %s %s n=%d in=%d out=%d o=[%d,%d) ldx=%zu ldy=%zu: wrote y[%d][%zu] outside its range\n",
                           level_name(lvl), dt_name(dt), n, in, out, o0, o1, ldx, ldy, t, o);
                    bad++;
                }
                continue;
            }
            double mag = 0;
            for (int i = 0; i < in; i++) mag += fabs((double)x[(size_t)t * ldx + i] * w_at(dt, w, (size_t)o * in + i));
            double err = fabs((double)y[at] - yr[at]);
            if (!(err <= 1e-5 * mag + 1e-30)) {
                printf("FAIL %s %s n=%d in=%d out=%d o=[%d,%d) ldx=%zu ldy=%zu: y[%d][%zu]=%.9g ref=%.9g (sum|xw|=%g)\n",
                       level_name(lvl), dt_name(dt), n, in, out, o0, o1, ldx, ldy, t, o, y[at], yr[at], mag);
                bad++;
            }
        }
    if (bad) g_fail++;
    free(x); free(y); free(yr); free(w);
}

static const moe_dtype k_dtypes[] = {MOE_F32, MOE_BF16, MOE_F16};

/* Systematic shapes around every boundary of the tiles and blocks, then random ones. */
static void check_level(int lvl) {
    static const int ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 17, 64};
    static const int ins[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 100, 255, 256, 257, 513};
    static const int outs[] = {1, 2, 3, 4, 5, 7, 13, 16, 17, 33};
    for (int d = 0; d < 3; d++)
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof ins / sizeof *ins; b++) {
                int n = ns[a], in = ins[b], out = outs[rnd() % (sizeof outs / sizeof *outs)];
                check_case(lvl, k_dtypes[d], n, in, out, 0, out, (size_t)in, (size_t)out);
                /* wider leading dimensions and a sub-range of rows */
                int o0 = rint_(0, out - 1), o1 = rint_(o0 + 1, out);
                check_case(lvl, k_dtypes[d], n, in, out, o0, o1, (size_t)in + rint_(1, 19), (size_t)out + rint_(1, 9));
            }
    /* Blocking boundaries: several KC slices and more than one MC block of x rows. */
    static const int big[][3] = {{130, 300, 9}, {200, 520, 6}, {257, 1031, 5}, {8, 2048, 37}, {64, 769, 20}, {33, 4100, 3}};
    for (int d = 0; d < 3; d++)
        for (size_t c = 0; c < sizeof big / sizeof *big; c++) {
            int n = big[c][0], in = big[c][1], out = big[c][2];
            check_case(lvl, k_dtypes[d], n, in, out, 0, out, (size_t)in, (size_t)out);
            check_case(lvl, k_dtypes[d], n, in, out, 1, out - 1 > 1 ? out - 1 : out, (size_t)in + 3, (size_t)out + 5);
        }
    for (int rep = 0; rep < 150; rep++) {
        moe_dtype dt = k_dtypes[rnd() % 3];
        int n = rint_(1, 40), in = rint_(1, 700), out = rint_(1, 40);
        int o0 = rint_(0, out - 1), o1 = rint_(o0 + 1, out);
        check_case(lvl, dt, n, in, out, o0, o1, (size_t)in + rint_(0, 8), (size_t)out + rint_(0, 8));
    }
}

/* Special values: zero rows, infinities and NaN must propagate as in the scalar kernel (where the
 * scalar result is NaN the SIMD one must be NaN too; infinities must match exactly). */
static void check_specials(int lvl) {
    for (int d = 0; d < 3; d++) {
        moe_dtype dt = k_dtypes[d];
        moe_gemm_kernel k = kernel_at(lvl, dt), ref = kernel_at(MOE_SIMD_SCALAR, dt);
        if (!k) continue;
        for (int n = 1; n <= 9; n += 8) {
            int in = 37, out = 6;
            float *x = calloc((size_t)n * in, 4), y[9 * 6], yr[9 * 6];
            void *w = random_weights(dt, (size_t)out * in);
            for (int t = 0; t < n; t++) x[t * in + 5] = 1.0f;   /* x picks column 5, row 0 rest zero */
            x[7] = INFINITY;                                   /* row 0: +inf times w[o][7] */
            if (n > 1) x[in + 9] = NAN;                        /* row 1: NaN everywhere */
            k(y, (size_t)out, x, (size_t)in, n, w, in, 0, out);
            ref(yr, (size_t)out, x, (size_t)in, n, w, in, 0, out);
            for (int i = 0; i < n * out; i++) {
                g_checks++;
                int ok = isnan(yr[i]) ? isnan(y[i]) : isinf(yr[i]) ? y[i] == yr[i] : fabsf(y[i] - yr[i]) <= 1e-5f * fabsf(yr[i]) + 1e-6f;
                if (!ok) {
                    printf("FAIL %s %s specials n=%d: y[%d]=%g ref=%g\n", level_name(lvl), dt_name(dt), n, i, y[i], yr[i]);
                    g_fail++;
                    break;
                }
            }
            free(x); free(w);
        }
    }
}

/* moe_matmul at every level: 1 and 2 threads give bit-identical results (the column split keeps the
 * tile alignment, so each output is computed by the same instructions), and both match the oracle. */
static void check_threads(int lvl) {
    static const int shapes[][3] = {{1, 4096, 1000}, {2, 777, 1111}, {4, 2048, 768}, {3, 1024, 333},
                                    {8, 513, 600}, {37, 1000, 257}, {130, 257, 300}};
    moe_simd_force((moe_simd)lvl);
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            moe_dtype dt = k_dtypes[d];
            int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            float *x = malloc((size_t)n * in * 4), *y1 = malloc((size_t)n * out * 4), *y2 = malloc((size_t)n * out * 4);
            float *yr = malloc((size_t)n * out * 4);
            void *w = random_weights(dt, (size_t)out * in);
            for (size_t i = 0; i < (size_t)n * in; i++) x[i] = rfloat();
            moe_set_threads(1);
            moe_matmul(y1, x, n, dt, w, out, in);
            moe_set_threads(2);
            moe_matmul(y2, x, n, dt, w, out, in);
            kernel_at(MOE_SIMD_SCALAR, dt)(yr, (size_t)out, x, (size_t)in, n, w, in, 0, out);
            g_checks++;
            if (memcmp(y1, y2, (size_t)n * out * 4) != 0) {
                printf("FAIL %s %s moe_matmul n=%d in=%d out=%d: 1 and 2 threads differ\n", level_name(lvl), dt_name(dt), n, in, out);
                g_fail++;
            }
            for (size_t i = 0; i < (size_t)n * out; i++) {
                size_t t = i / (size_t)out, o = i % (size_t)out;
                double mag = 0;
                for (int j = 0; j < in; j++) mag += fabs((double)x[t * in + j] * w_at(dt, w, o * in + j));
                if (!(fabs((double)y2[i] - yr[i]) <= 1e-5 * mag + 1e-30)) {
                    printf("FAIL %s %s moe_matmul n=%d in=%d out=%d: y[%zu]=%g ref=%g\n", level_name(lvl), dt_name(dt), n, in, out, i, y2[i], yr[i]);
                    g_fail++;
                    break;
                }
            }
            free(x); free(y1); free(y2); free(yr); free(w);
        }
    moe_set_threads(0);
    moe_simd_force(moe_simd_detect());
}

/* moe_matmul_many: batches of mixed jobs (dtypes, decode and prefill, tiny and large) give the same
 * bits as moe_matmul_ld job by job, for 1, 2 and 3 threads, and touch nothing outside their y. */
static void check_many(void) {
    for (int rep = 0; rep < 12; rep++) {
        int nj = rint_(1, 20);
        moe_matmul_job jobs[20];
        float *ref[20];
        size_t ylen[20];
        for (int j = 0; j < nj; j++) {
            moe_dtype dt = k_dtypes[rnd() % 3];
            int n = rnd() % 4 == 0 ? rint_(8, 40) : rint_(1, 4), in = rint_(1, 900);
            int out = rnd() % 3 == 0 ? rint_(1, 20) : rint_(100, 1200);
            if (rnd() % 5 == 0) n = 0;   /* empty jobs (an expert with no tokens) are allowed */
            size_t ldx = (size_t)in + rint_(0, 3), ldy = (size_t)out + rint_(0, 3);
            int rows = n > 0 ? n : 1;
            float *x = malloc(sizeof(float) * ldx * rows);
            for (size_t i = 0; i < ldx * rows; i++) x[i] = rfloat();
            ylen[j] = ldy * rows;
            jobs[j] = (moe_matmul_job){malloc(sizeof(float) * ylen[j]), ldy, x, ldx, n, dt,
                                       random_weights(dt, (size_t)out * in), out, in};
            ref[j] = malloc(sizeof(float) * ylen[j]);
            for (size_t i = 0; i < ylen[j]; i++) ref[j][i] = SENTINEL;
            moe_set_threads(1);
            moe_matmul_ld(ref[j], ldy, x, ldx, n, dt, jobs[j].w, out, in);
        }
        for (int nt = 1; nt <= 3; nt++) {
            for (int j = 0; j < nj; j++)
                for (size_t i = 0; i < ylen[j]; i++) jobs[j].y[i] = SENTINEL;
            moe_set_threads(nt);
            moe_matmul_many(jobs, nj);
            for (int j = 0; j < nj; j++) {
                g_checks++;
                if (memcmp(jobs[j].y, ref[j], sizeof(float) * ylen[j]) != 0) {
                    printf("FAIL moe_matmul_many %d threads: job %d of %d (n=%d out=%d in=%d %s) differs from moe_matmul_ld\n",
                           nt, j, nj, jobs[j].n, jobs[j].out, jobs[j].in, dt_name(jobs[j].dt));
                    g_fail++;
                }
            }
        }
        for (int j = 0; j < nj; j++) {
            free(jobs[j].y); free((void *)jobs[j].x); free((void *)jobs[j].w); free(ref[j]);
        }
    }
    moe_set_threads(0);
}

int main(void) {
    const char *env = getenv("MOE_TEST_SEED");
    uint64_t fresh = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    const uint64_t seeds[] = {1, 42, 20240601, fresh};
    int top = moe_simd_detect();
    printf("detected SIMD level: %s; fresh seed %llu (MOE_TEST_SEED=%llu replays it)\n", level_name(top),
           (unsigned long long)fresh, (unsigned long long)fresh);
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        g_rng = seeds[s];
        for (int lvl = MOE_SIMD_SCALAR; lvl <= top; lvl++) {
            int before = g_fail;
            if (lvl > MOE_SIMD_SCALAR) {
                check_level(lvl);
                check_specials(lvl);
            }
            if (s == 0) check_threads(lvl);
            if (g_fail > before) printf("  (seed %llu, level %s)\n", (unsigned long long)seeds[s], level_name(lvl));
        }
        if (s == 0) check_many();
        if (top >= MOE_SIMD_AVX2) {
            int before = g_fail;
            check_level(LVL_EMU16);
            check_specials(LVL_EMU16);
            if (g_fail > before) printf("  (seed %llu, level emu16)\n", (unsigned long long)seeds[s]);
        }
    }
    if (top < MOE_SIMD_AVX512) printf("note: this CPU/OS cannot run AVX-512; its kernel logic was tested through the emu16 emulation\n");
    printf("%d checks, %d failures\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
