/* test_dtype_table.c - the dtype table (core/dtype_traits.h) is consistent, and every type it lists
 * as a weight matrix computes what its own converter says, at every SIMD level the CPU runs:
 *  1. names and safetensors names round-trip; row bytes are whole blocks; block types have no element
 *     size; a type with kernels has a scalar kernel and a converter;
 *  2. for every type with kernels and a writer (`quantize`): a random matrix written by the writer,
 *     multiplied through each level's kernel (and through moe_matmul with 1 and 2 threads, which
 *     must agree bit for bit), against a double-precision product of x with the rows the converter
 *     gives back. Tolerance 1e-5 * sum|x w| for kernels on f32 activations; types whose kernels
 *     quantize x to int8 per block of 32 (qgemm) get the bound of that rounding, sum |w| * max|x| / 127
 *     over each block (half a step of x is max|x|/254, doubled for slack).
 * A new type added to the table is covered here without a change to this file. */
#include "core/dtype_traits.h"
#include "moe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "unit/testrand.h"

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

static void test_consistency(void) {
    for (int i = 0; i < MOE_DTYPE_COUNT; i++) {
        moe_dtype t = (moe_dtype)i;
        const moe_dtype_traits *tr = moe_dtype_traits_of(t);
        CHECK(tr->name && strcmp(tr->name, "?"), "type %d has no name", i);
        CHECK(moe_dtype_from_name(tr->name) == i, "%s: name does not round-trip", tr->name);
        if (tr->st_name) CHECK(moe_dtype_from_safetensors(tr->st_name) == i, "%s: safetensors name does not round-trip", tr->name);
        CHECK(tr->block >= 1 && tr->block_bytes >= 1, "%s: block %d bytes %d", tr->name, tr->block, tr->block_bytes);
        CHECK(moe_dtype_size(t) == (tr->block == 1 ? (size_t)tr->block_bytes : 0), "%s: element size", tr->name);
        for (int64_t c = 1; c < 700; c += 37)
            CHECK(moe_dtype_row_bytes(t, c) == (size_t)((c + tr->block - 1) / tr->block) * tr->block_bytes, "%s: row bytes of %lld",
                  tr->name, (long long)c);
        if (moe_dtype_is_matrix(t)) CHECK(tr->gemm[MOE_SIMD_SCALAR] != NULL, "%s: no scalar kernel", tr->name);
        if (tr->qgemm[MOE_SIMD_AVX2] || tr->qgemm[MOE_SIMD_AVX512]) CHECK(tr->qgemm[MOE_SIMD_SCALAR] != NULL, "%s: no scalar qgemm", tr->name);
    }
    CHECK(moe_dtype_from_name("no such type") == -1 && moe_dtype_from_safetensors("Q4") == -1, "unknown names");
    CHECK(!strcmp(moe_dtype_name((moe_dtype)-1), "?") && moe_dtype_row_bytes((moe_dtype)MOE_DTYPE_COUNT, 10) == 0, "invalid type");
}

static float gauss(void) {
    double u = ((rnd() >> 11) + 0.5) / 9007199254740992.0, v = ((rnd() >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void check_product(moe_dtype t, int n, int in, int out) {
    const moe_dtype_traits *tr = moe_dtype_traits_of(t);
    size_t rb = moe_dtype_row_bytes(t, in);
    unsigned char *w = malloc(rb * (size_t)out);
    float *wf = malloc(sizeof(float) * (size_t)in), *wd = malloc(sizeof(float) * (size_t)in * out);
    float *x = malloc(sizeof(float) * (size_t)n * in), *y = malloc(sizeof(float) * (size_t)n * out);
    float *y1 = malloc(sizeof(float) * (size_t)n * out), *y2 = malloc(sizeof(float) * (size_t)n * out);
    for (int o = 0; o < out; o++) {
        float scale = ldexpf(1.0f, rint_(-6, 1));
        for (int i = 0; i < in; i++) wf[i] = gauss() * scale;
        tr->quantize(wf, in, w + (size_t)o * rb);
        tr->to_f32(w + (size_t)o * rb, in, wd + (size_t)o * in);
    }
    for (int i = 0; i < n * in; i++) x[i] = rfloat();
    int int8_act = tr->qgemm[MOE_SIMD_SCALAR] != NULL;
    for (int lvl = MOE_SIMD_SCALAR; lvl <= (int)moe_simd_detect(); lvl++) {
        moe_gemm_kernel k = tr->gemm[lvl];
        if (!k) continue;
        moe_simd_force((moe_simd)lvl);   /* adapters pick their inner kernel by the current level */
        for (int i = 0; i < n * out; i++) y[i] = NAN;
        int mid = out / 2;
        k(y, (size_t)out, x, (size_t)in, n, w, in, 0, mid);
        k(y, (size_t)out, x, (size_t)in, n, w, in, mid, out);
        for (int r = 0; r < n; r++)
            for (int o = 0; o < out; o++) {
                double ref = 0, mag = 0, tol;
                for (int i = 0; i < in; i++) {
                    ref += (double)x[r * in + i] * wd[(size_t)o * in + i];
                    mag += fabs((double)x[r * in + i] * wd[(size_t)o * in + i]);
                }
                if (int8_act) {
                    tol = 0;
                    for (int b = 0; b < in; b += 32) {
                        double xm = 0, ws = 0;
                        for (int i = b; i < in && i < b + 32; i++) {
                            xm = fmax(xm, fabs(x[r * in + i]));
                            ws += fabs(wd[(size_t)o * in + i]);
                        }
                        tol += ws * xm / 127.0;
                    }
                    tol += 1e-5 * mag;
                } else {
                    tol = 1e-5 * mag;
                }
                double err = fabs(y[r * out + o] - ref);
                if (!(err <= tol + 1e-30)) {
                    CHECK(0, "%s level %d n %d in %d out %d: y[%d][%d] = %.9g, reference %.9g (tol %.3g)", tr->name, lvl, n, in,
                          out, r, o, y[r * out + o], ref, tol);
                    goto done;
                }
            }
    }
    moe_simd_force(moe_simd_detect());
    moe_set_threads(1);
    moe_matmul(y1, x, n, t, w, out, in);
    moe_set_threads(2);
    moe_matmul(y2, x, n, t, w, out, in);
    CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)n * out), "%s n %d in %d out %d: 1 and 2 threads differ", tr->name, n, in, out);
done:
    moe_simd_force(moe_simd_detect());
    moe_set_threads(0);
    free(w); free(wf); free(wd); free(x); free(y); free(y1); free(y2);
}

static void test_products(void) {
    int tested = 0;
    for (int i = 0; i < MOE_DTYPE_COUNT; i++) {
        moe_dtype t = (moe_dtype)i;
        const moe_dtype_traits *tr = moe_dtype_traits_of(t);
        if (!moe_dtype_is_matrix(t) || !tr->quantize || !tr->to_f32) continue;
        int blk = tr->block;
        /* whole blocks, and (where rows may be padded) ragged lengths; decode and prefill row counts */
        const int ns[] = {1, 2, 3, 5, 9, 33};
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
            check_product(t, ns[a], blk * rint_(1, 6), rint_(1, 70));
            if (!(tr->flags & MOE_DT_WHOLE_BLOCKS)) check_product(t, ns[a], rint_(1, 600), rint_(1, 70));
        }
        check_product(t, 1, blk * (2048 / blk > 0 ? 2048 / blk : 1), 300);
        check_product(t, 40, blk * (1024 / blk > 0 ? 1024 / blk : 1), 100);
        tested++;
    }
    printf("products of %d types checked\n", tested);
    CHECK(tested >= 14, "only %d types with kernels and writers", tested);
}

int main(void) {
    const char *env = getenv("MOE_TEST_SEED");
    uint64_t fresh = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    printf("fresh seed %llu (MOE_TEST_SEED=N replays it)\n", (unsigned long long)fresh);
    test_consistency();
    const uint64_t seeds[] = {7, fresh};
    for (size_t s = 0; s < 2; s++) {
        g_rng = seeds[s];
        int before = fails;
        test_products();
        if (fails > before) printf("  (seed %llu)\n", (unsigned long long)seeds[s]);
    }
    if (fails) { printf("%d failures\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
