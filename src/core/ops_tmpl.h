/* ops_tmpl.h - the row-wise operations over the vector vocabulary of vec_avx2.h / vec_avx512.h,
 * included by ops_avx2.c and ops_avx512.c (and the 16-lane emulation in the tests).
 *
 * Agreement with the scalar oracles in ops.c is the design constraint, more than speed:
 *  - rmsnorm sums x^2 in double like the oracle (products of floats are exact in double, so only
 *    the order of a double sum differs) and then applies the same float operations in the same
 *    order, so results are almost always bit-identical;
 *  - exp is the Cephes single-precision polynomial (<= 2 ulp from expf) on the range where
 *    2^n is a normal float; lanes outside [-87, 88.3] (underflow to subnormals, overflow, NaN)
 *    are recomputed with expf, so special values behave exactly as in the oracle;
 *  - softmax sums in double like the oracle; silu_mul keeps the oracle's g / (1 + e^-g) * u order;
 *  - dot uses four accumulators (another summation order: ~sqrt(n) ulp of sum |a b|). */
#ifndef VW
#error "include vec_avx2.h or vec_avx512.h before ops_tmpl.h"
#endif
#include "core/ops.h"
#include <math.h>

#define OPS_CAT_(a, b) a##_##b
#define OPS_CAT(a, b) OPS_CAT_(a, b)
#define OPS_NAME(f) OPS_CAT(f, VEC_ISA)

#define EXP_LO -87.0f
#define EXP_HI 88.3f

/* e^x for x in [EXP_LO, EXP_HI]: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 polynomial. */
VINLINE vf vexp_core(vf x) {
    vf n = vround(vmul(x, vset1(1.44269504088896341f)));
    vf r = vfma(n, vset1(-0.693359375f), x);            /* ln2 split in two: n*hi is exact */
    r = vfma(n, vset1(2.12194440e-4f), r);
    vf p = vset1(1.9875691500e-4f);
    p = vfma(p, r, vset1(1.3981999507e-3f));
    p = vfma(p, r, vset1(8.3334519073e-3f));
    p = vfma(p, r, vset1(4.1665795894e-2f));
    p = vfma(p, r, vset1(1.6666665459e-1f));
    p = vfma(p, r, vset1(5.0000001201e-1f));
    p = vfma(p, vmul(r, r), vadd(r, vset1(1.0f)));
    return vmul(p, vpow2i(n));
}

static vf OPS_NAME(exp_fixup)(vf x, vf e, unsigned bad) {
    float xs[VW], es[VW];
    vstore(xs, x);
    vstore(es, e);
    for (int j = 0; j < VW; j++)
        if (bad >> j & 1) es[j] = expf(xs[j]);
    return vload(es);
}

VINLINE vf vexp(vf x) {
    vf e = vexp_core(vmin(vmax(x, vset1(EXP_LO)), vset1(EXP_HI)));
    unsigned bad = vmask_outside(x, EXP_LO, EXP_HI);
    return bad ? OPS_NAME(exp_fixup)(x, e, bad) : e;
}

static void OPS_NAME(rmsnorm)(float *y, const float *x, const float *w, int rows, int n, double eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        vd s0 = vd_zero(), s1 = vd_zero(), s2 = vd_zero(), s3 = vd_zero();
        int i = 0;
        for (; i + 2 * VW <= n; i += 2 * VW) {
            vf a = vload(xr + i), b = vload(xr + i + VW);
            vd al = vd_lo(a), ah = vd_hi(a), bl = vd_lo(b), bh = vd_hi(b);
            s0 = vd_fma(al, al, s0);
            s1 = vd_fma(ah, ah, s1);
            s2 = vd_fma(bl, bl, s2);
            s3 = vd_fma(bh, bh, s3);
        }
        for (; i < n; i += VW) {
            vf a = n - i >= VW ? vload(xr + i) : vload_n(xr + i, n - i);
            vd al = vd_lo(a), ah = vd_hi(a);
            s0 = vd_fma(al, al, s0);
            s1 = vd_fma(ah, ah, s1);
        }
        double ss = vd_hsum(vd_add(vd_add(s0, s1), vd_add(s2, s3)));
        float var = (float)(ss / n);
        float inv = 1.0f / sqrtf(var + (float)eps);
        vf vi = vset1(inv);
        for (i = 0; i + VW <= n; i += VW) vstore(yr + i, vmul(vload(w + i), vmul(vload(xr + i), vi)));
        if (i < n) vstore_n(yr + i, vmul(vload_n(w + i, n - i), vmul(vload_n(xr + i, n - i), vi)), n - i);
    }
}

VINLINE vf silu_mul_v(vf g, vf u) {
    vf e = vexp(vsub(vzero(), g));
    return vmul(vdiv(g, vadd(vset1(1.0f), e)), u);
}

static void OPS_NAME(silu_mul)(float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + VW <= n; i += VW) vstore(g + i, silu_mul_v(vload(g + i), vload(u + i)));
    if (i < n) {
        int k = (int)(n - i);
        vstore_n(g + i, silu_mul_v(vload_n(g + i, k), vload_n(u + i, k)), k);
    }
}

static void OPS_NAME(softmax)(float *x, int n) {
    if (n <= 0) return;
    /* max, with the oracle's rule: NaN anywhere makes every output NaN (through exp(NaN - m)) */
    vf mv = vset1(x[0]);
    int i = 0;
    for (; i + VW <= n; i += VW) mv = vmax(mv, vload(x + i));
    float m = vhmax(mv);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    vf vm = vset1(m);
    vd s0 = vd_zero(), s1 = vd_zero();
    for (i = 0; i + VW <= n; i += VW) {
        vf e = vexp(vsub(vload(x + i), vm));
        vstore(x + i, e);
        s0 = vd_add(s0, vd_lo(e));
        s1 = vd_add(s1, vd_hi(e));
    }
    if (i < n) {
        int k = n - i;
        vstore_n(x + i, vexp(vsub(vload_n(x + i, k), vm)), k);
        vf e = vload_n(x + i, k);   /* lanes past n read back as zero */
        s0 = vd_add(s0, vd_lo(e));
        s1 = vd_add(s1, vd_hi(e));
    }
    float inv = 1.0f / (float)vd_hsum(vd_add(s0, s1));
    vf vi = vset1(inv);
    for (i = 0; i + VW <= n; i += VW) vstore(x + i, vmul(vload(x + i), vi));
    if (i < n) vstore_n(x + i, vmul(vload_n(x + i, n - i), vi), n - i);
}

static float OPS_NAME(dot)(const float *a, const float *b, int n) {
    vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
    int i = 0;
    for (; i + 4 * VW <= n; i += 4 * VW) {
        s0 = vfma(vload(a + i), vload(b + i), s0);
        s1 = vfma(vload(a + i + VW), vload(b + i + VW), s1);
        s2 = vfma(vload(a + i + 2 * VW), vload(b + i + 2 * VW), s2);
        s3 = vfma(vload(a + i + 3 * VW), vload(b + i + 3 * VW), s3);
    }
    for (; i + VW <= n; i += VW) s0 = vfma(vload(a + i), vload(b + i), s0);
    if (i < n) s1 = vfma(vload_n(a + i, n - i), vload_n(b + i, n - i), s1);
    return vhsum(vadd(vadd(s0, s1), vadd(s2, s3)));
}

static void OPS_NAME(axpy)(float *y, float a, const float *x, int n) {
    vf va = vset1(a);
    int i = 0;
    for (; i + VW <= n; i += VW) vstore(y + i, vfma(va, vload(x + i), vload(y + i)));
    if (i < n) vstore_n(y + i, vfma(va, vload_n(x + i, n - i), vload_n(y + i, n - i)), n - i);
}

#define OPS_TABLE {OPS_NAME(rmsnorm), OPS_NAME(silu_mul), OPS_NAME(softmax), OPS_NAME(dot), OPS_NAME(axpy)}
