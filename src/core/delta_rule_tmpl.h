/* delta_rule_tmpl.h - the gated delta rule step over the vector vocabulary of vec_avx2.h / vec_avx512.h,
 * included by delta_rule_avx2.c and delta_rule_avx512.c (and the 16-lane emulation in the tests). Each
 * state row (one value coordinate, contiguous along dk) is read twice while it sits in L1: once to decay
 * it and read S^T k, once to add the update and read S^T q. Same operations per element as the scalar
 * oracle; only the order of the two sums over dk differs (a few ulp). */
#ifndef VW
#error "include vec_avx2.h or vec_avx512.h before delta_rule_tmpl.h"
#endif
#include "core/delta_rule.h"

#define DR_CAT_(a, b) a##_##b
#define DR_CAT(a, b) DR_CAT_(a, b)
#define DR_NAME(f) DR_CAT(f, VEC_ISA)

static void DR_NAME(delta_step)(float *st, int dk, int dv, const float *q, const float *k, const float *v,
                                float decay, float beta, float *out) {
    vf vdec = vset1(decay);
    for (int j = 0; j < dv; j++) {
        float *row = st + (size_t)j * dk;
        vf s0 = vzero(), s1 = vzero();
        int i = 0;
        for (; i + 2 * VW <= dk; i += 2 * VW) {
            vf a = vmul(vload(row + i), vdec), b = vmul(vload(row + i + VW), vdec);
            vstore(row + i, a);
            vstore(row + i + VW, b);
            s0 = vfma(a, vload(k + i), s0);
            s1 = vfma(b, vload(k + i + VW), s1);
        }
        for (; i < dk; i += VW) {
            int m = dk - i < VW ? dk - i : VW;
            vf a = vmul(vload_n(row + i, m), vdec);
            vstore_n(row + i, a, m);
            s0 = vfma(a, vload_n(k + i, m), s0);
        }
        float delta = (v[j] - vhsum(vadd(s0, s1))) * beta;
        vf vdl = vset1(delta);
        s0 = vzero();
        s1 = vzero();
        for (i = 0; i + 2 * VW <= dk; i += 2 * VW) {
            vf a = vfma(vload(k + i), vdl, vload(row + i)), b = vfma(vload(k + i + VW), vdl, vload(row + i + VW));
            vstore(row + i, a);
            vstore(row + i + VW, b);
            s0 = vfma(a, vload(q + i), s0);
            s1 = vfma(b, vload(q + i + VW), s1);
        }
        for (; i < dk; i += VW) {
            int m = dk - i < VW ? dk - i : VW;
            vf a = vfma(vload_n(k + i, m), vdl, vload_n(row + i, m));
            vstore_n(row + i, a, m);
            s0 = vfma(a, vload_n(q + i, m), s0);
        }
        out[j] = vhsum(vadd(s0, s1));
    }
}

#define DELTA_TABLE {DR_NAME(delta_step)}
