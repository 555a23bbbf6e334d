/* delta_rule.c - the scalar step (the oracle of delta_rule_avx2.c / _avx512.c), the dispatch, and the
 * chunked form (see delta_rule.h). The chunked form does its products against the state with
 * moe_matmul (the state is an f32 matrix [dv][dk], exactly the [out][in] layout of a weight) and its
 * small triangular parts with moe_dot / moe_axpy, so every inner loop is one of the tested kernels. */
#include "core/delta_rule.h"
#include "core/matmul.h"
#include "core/ops.h"
#include <math.h>
#include <string.h>

/* transformers: S *= decay; kv = sum_i S[i] k[i]; delta = (v - kv) beta; S += k delta^T; o = sum_i S[i] q[i]
 * (elementwise the same operations; the state is stored transposed). */
static void step_scalar(float *st, int dk, int dv, const float *q, const float *k, const float *v, float decay,
                        float beta, float *out) {
    for (int j = 0; j < dv; j++) {
        float *row = st + (size_t)j * dk;
        float kv = 0;
        for (int i = 0; i < dk; i++) {
            row[i] *= decay;
            kv += row[i] * k[i];
        }
        float delta = (v[j] - kv) * beta, o = 0;
        for (int i = 0; i < dk; i++) {
            row[i] += k[i] * delta;
            o += row[i] * q[i];
        }
        out[j] = o;
    }
}

const moe_delta_kernels moe_delta_scalar = {step_scalar};

const moe_delta_kernels *moe_delta_kernels_for(moe_simd s) {
    switch (s) {
    case MOE_SIMD_AVX512: return &moe_delta_avx512;
    case MOE_SIMD_AVX2: return &moe_delta_avx2;
    default: return &moe_delta_scalar;
    }
}

void moe_delta_step(float *st, int dk, int dv, const float *q, const float *k, const float *v, float decay,
                    float beta, float *out) {
    moe_delta_kernels_for(moe_simd_level())->step(st, dk, dv, q, k, v, decay, beta, out);
}

size_t moe_delta_chunk_scratch(int chunk, int dk, int dv) {
    size_t L = (size_t)chunk;
    return L + 2 * L * L + 5 * L * (size_t)dk + 5 * L * (size_t)dv + (size_t)dv * dk;
}

/* One chunk of L tokens. Names follow transformers' torch_chunk_gated_delta_rule. */
static void chunk(float *st, int dk, int dv, int L, const float *q, const float *k, const float *v, const float *g,
                  const float *beta, float *out, float *s) {
    float *G = s, *A = G + L, *QK = A + (size_t)L * L;
    float *kb = QK + (size_t)L * L, *W = kb + (size_t)L * dk, *qd = W + (size_t)L * dk, *kdT = qd + (size_t)L * dk;
    float *U = kdT + (size_t)L * dk, *vnew = U + (size_t)L * dv, *vnewT = vnew + (size_t)L * dv;
    float *tmp = vnewT + (size_t)L * dv, *inter = tmp + (size_t)L * dv, *y = inter + (size_t)L * dv;
    /* cumulative log decay (torch's CPU cumsum accumulates float in double) */
    double acc = 0;
    for (int t = 0; t < L; t++) G[t] = (float)(acc += g[t]);
    for (int t = 0; t < L; t++) {
        for (int i = 0; i < dk; i++) kb[(size_t)t * dk + i] = k[(size_t)t * dk + i] * beta[t];
        for (int j = 0; j < dv; j++) U[(size_t)t * dv + j] = v[(size_t)t * dv + j] * beta[t];
    }
    /* A[t][s] = (kb_t . k_s) e^(G_t - G_s), s < t; QK[t][s] = (q_t . k_s) e^(G_t - G_s), s <= t */
    for (int t = 0; t < L; t++)
        for (int u = 0; u <= t; u++) {
            float dec = expf(G[t] - G[u]);
            if (u < t) A[(size_t)t * L + u] = moe_dot(kb + (size_t)t * dk, k + (size_t)u * dk, dk) * dec;
            QK[(size_t)t * L + u] = moe_dot(q + (size_t)t * dk, k + (size_t)u * dk, dk) * dec;
        }
    /* (I + A) U = v beta and (I + A) W = k beta e^G by forward substitution (the unit lower solve) */
    for (int t = 0; t < L; t++) {
        float eg = expf(G[t]);
        float *wt = W + (size_t)t * dk, *ut = U + (size_t)t * dv;
        for (int i = 0; i < dk; i++) wt[i] = kb[(size_t)t * dk + i] * eg;
        for (int u = 0; u < t; u++) {
            float a = A[(size_t)t * L + u];
            moe_axpy(ut, -a, U + (size_t)u * dv, dv);
            moe_axpy(wt, -a, W + (size_t)u * dk, dk);
        }
    }
    float glast = G[L - 1];
    for (int t = 0; t < L; t++) {
        float eq = expf(G[t]), ek = expf(glast - G[t]);
        for (int i = 0; i < dk; i++) {
            qd[(size_t)t * dk + i] = q[(size_t)t * dk + i] * eq;
            kdT[(size_t)i * L + t] = k[(size_t)t * dk + i] * ek;
        }
    }
    /* v_new = U - W S; out = (q e^G) S + QK v_new */
    moe_matmul(tmp, W, L, MOE_F32, st, dv, dk);
    moe_matmul(inter, qd, L, MOE_F32, st, dv, dk);
    for (size_t i = 0; i < (size_t)L * dv; i++) vnew[i] = U[i] - tmp[i];
    for (int t = 0; t < L; t++) {
        float *o = out + (size_t)t * dv;
        memcpy(o, inter + (size_t)t * dv, sizeof(float) * (size_t)dv);
        for (int u = 0; u <= t; u++) moe_axpy(o, QK[(size_t)t * L + u], vnew + (size_t)u * dv, dv);
    }
    /* S = S e^(G_last) + (k e^(G_last - G))^T v_new, transposed: st[j][i] */
    for (int t = 0; t < L; t++)
        for (int j = 0; j < dv; j++) vnewT[(size_t)j * L + t] = vnew[(size_t)t * dv + j];
    moe_matmul(y, vnewT, dv, MOE_F32, kdT, dk, L);
    float cd = expf(glast);
    for (size_t i = 0; i < (size_t)dv * dk; i++) st[i] = st[i] * cd + y[i];
}

void moe_delta_chunked(float *st, int dk, int dv, int n, const float *q, const float *k, const float *v,
                       const float *g, const float *beta, float *out, int chunk_len, float *scratch) {
    for (int c0 = 0; c0 < n; c0 += chunk_len) {
        int L = n - c0 < chunk_len ? n - c0 : chunk_len;
        chunk(st, dk, dv, L, q + (size_t)c0 * dk, k + (size_t)c0 * dk, v + (size_t)c0 * dv, g + c0, beta + c0,
              out + (size_t)c0 * dv, scratch);
    }
}
