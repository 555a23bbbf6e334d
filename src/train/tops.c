/* tops.c - forward and backward of the training model's operations (see tops.h). */
#include "train/tops.h"
#include "core/alloc.h"
#include "train/tgemm.h"
#include "train/tvec.h"
#include "core/cpu.h"
#include <omp.h>
#include <math.h>
#include <string.h>

void moe_embed_fwd(float *x, const float *E, const int32_t *tok, int N, int d) {
    for (int t = 0; t < N; t++) memcpy(x + (size_t)t * d, E + (size_t)tok[t] * d, sizeof(float) * (size_t)d);
}

void moe_embed_bwd(float *dE, const float *dx, const int32_t *tok, int N, int d) {
    /* serial in t: two tokens may share a row, and the order of the sums must not depend on threads */
    for (int t = 0; t < N; t++) {
        float *r = dE + (size_t)tok[t] * d;
        const float *g = dx + (size_t)t * d;
        for (int i = 0; i < d; i++) r[i] += g[i];
    }
}

void moe_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int rows, int n, double eps) {
    #pragma omp parallel for schedule(static) if (rows * n > 32768)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *yr = y + (size_t)r * n;
        double ss = 0;
        #pragma omp simd reduction(+ : ss)
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float var = (float)(ss / n);
        float inv = 1.0f / sqrtf(var + (float)eps);
        rstd[r] = inv;
        #pragma omp simd
        for (int i = 0; i < n; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

void moe_rmsnorm_bwd(float *dx, int accumulate, float *dw, const float *dy, const float *x, const float *w,
                     const float *rstd, int rows, int n) {
    /* y_i = w_i x_i r, r = (mean x^2 + eps)^-1/2:  dx_i = r w_i dy_i - x_i r^3 / n * sum_j w_j dy_j x_j */
    #pragma omp parallel for schedule(static) if (rows * n > 32768)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n, *g = dy + (size_t)r * n;
        float *o = dx + (size_t)r * n;
        float inv = rstd[r];
        double dot = 0;
        #pragma omp simd reduction(+ : dot)
        for (int i = 0; i < n; i++) dot += (double)(w[i] * g[i]) * xr[i];
        float c = (float)(dot * inv * inv * inv / n);
        if (accumulate) {
            #pragma omp simd
            for (int i = 0; i < n; i++) o[i] += inv * w[i] * g[i] - xr[i] * c;
        } else {
            #pragma omp simd
            for (int i = 0; i < n; i++) o[i] = inv * w[i] * g[i] - xr[i] * c;
        }
    }
    /* dw: columns are independent; within a column, rows in order */
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n, *g = dy + (size_t)r * n;
        float inv = rstd[r];
        #pragma omp simd
        for (int i = 0; i < n; i++) dw[i] += g[i] * xr[i] * inv;
    }
}

void moe_rope_table(float *cs, float *sn, int T, int hd, double theta) {
    /* as the inference engine (rope.c): inv_freq in float, angle = pos * inv_freq in float */
    int half = hd / 2;
    float base = (float)theta;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf(base, (float)(2 * i) / (float)hd);
        for (int p = 0; p < T; p++) {
            float a = (float)p * inv;
            cs[(size_t)p * half + i] = cosf(a);
            sn[(size_t)p * half + i] = sinf(a);
        }
    }
}

static void rotate(float *v, const float *cs, const float *sn, int N, int T, int heads, int hd, float sign) {
    int half = hd / 2;
    #pragma omp parallel for schedule(static) if ((size_t)N * heads * hd > 32768)
    for (int t = 0; t < N; t++) {
        const float *c = cs + (size_t)(t % T) * half, *s = sn + (size_t)(t % T) * half;
        for (int h = 0; h < heads; h++) {
            float *x = v + ((size_t)t * heads + h) * hd;
            for (int i = 0; i < half; i++) {
                float a = x[i], b = x[i + half], si = sign * s[i];
                x[i] = a * c[i] - b * si;
                x[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void moe_rope_fwd(float *v, const float *cs, const float *sn, int N, int T, int heads, int hd) {
    rotate(v, cs, sn, N, T, heads, hd, 1.0f);
}

void moe_rope_bwd(float *dv, const float *cs, const float *sn, int N, int T, int heads, int hd) {
    rotate(dv, cs, sn, N, T, heads, hd, -1.0f);  /* the transpose of a rotation is the opposite rotation */
}

void moe_attn_fwd_ref(float *o, float *att, const float *q, const float *k, const float *v, int B, int T, int H, int KV,
                  int hd, float scale) {
    int group = H / KV;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / group;
            for (int t = 0; t < T; t++) {
                const float *qv = q + (((size_t)b * T + t) * H + h) * hd;
                float *p = att + (((size_t)b * H + h) * T + t) * T;
                float mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    const float *kr = k + (((size_t)b * T + j) * KV + g) * hd;
                    float s = 0;
                    for (int i = 0; i < hd; i++) s += qv[i] * kr[i];
                    p[j] = s * scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                float sum = 0;
                for (int j = 0; j <= t; j++) sum += (p[j] = expf(p[j] - mx));
                float inv = 1.0f / sum;
                for (int j = 0; j <= t; j++) p[j] *= inv;
                for (int j = t + 1; j < T; j++) p[j] = 0;
                float *ov = o + (((size_t)b * T + t) * H + h) * hd;
                memset(ov, 0, sizeof(float) * (size_t)hd);
                for (int j = 0; j <= t; j++) {
                    const float *vr = v + (((size_t)b * T + j) * KV + g) * hd;
                    float w = p[j];
                    for (int i = 0; i < hd; i++) ov[i] += w * vr[i];
                }
            }
        }
}

void moe_attn_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                  const float *att, int B, int T, int H, int KV, int hd, float scale) {
    int group = H / KV;
    /* one task per (batch, kv head): it owns dk and dv of its rows and dq of its query heads */
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++) {
            float ds[T > 0 ? T : 1];
            for (int j = 0; j < T; j++) {
                memset(dk + (((size_t)b * T + j) * KV + g) * hd, 0, sizeof(float) * (size_t)hd);
                memset(dv + (((size_t)b * T + j) * KV + g) * hd, 0, sizeof(float) * (size_t)hd);
            }
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    const float *p = att + (((size_t)b * H + h) * T + t) * T;
                    const float *go = dout + (((size_t)b * T + t) * H + h) * hd;
                    const float *qv = q + (((size_t)b * T + t) * H + h) * hd;
                    float *gq = dq + (((size_t)b * T + t) * H + h) * hd;
                    /* dp_j = do . v_j ;  ds_j = p_j (dp_j - sum_i p_i dp_i) */
                    double dot = 0;
                    for (int j = 0; j <= t; j++) {
                        const float *vr = v + (((size_t)b * T + j) * KV + g) * hd;
                        float s = 0;
                        for (int i = 0; i < hd; i++) s += go[i] * vr[i];
                        ds[j] = s;
                        dot += (double)s * p[j];
                    }
                    memset(gq, 0, sizeof(float) * (size_t)hd);
                    for (int j = 0; j <= t; j++) {
                        float s = p[j] * (ds[j] - (float)dot) * scale;
                        const float *kr = k + (((size_t)b * T + j) * KV + g) * hd;
                        float *gk = dk + (((size_t)b * T + j) * KV + g) * hd;
                        float *gv = dv + (((size_t)b * T + j) * KV + g) * hd;
                        for (int i = 0; i < hd; i++) {
                            gq[i] += s * kr[i];
                            gk[i] += s * qv[i];
                            gv[i] += p[j] * go[i];
                        }
                    }
                }
        }
}

void moe_swiglu_act_fwd_ref(float *a, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Blocks of 4096 spread over threads; each block by the AVX2 kernel when there is one. */
#define VBLOCK 4096
void moe_swiglu_act_fwd(float *a, const float *g, const float *u, size_t n) {
    int avx2 = moe_simd_level() >= MOE_SIMD_AVX2;
    long nb = (long)((n + VBLOCK - 1) / VBLOCK);
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * VBLOCK, m = n - i0 < VBLOCK ? n - i0 : VBLOCK;
        if (avx2) moe_swiglu_act_fwd_avx2(a + i0, g + i0, u + i0, m);
        else moe_swiglu_act_fwd_ref(a + i0, g + i0, u + i0, m);
    }
}

void moe_swiglu_act_bwd_ref(float *dg, float *du, const float *da, const float *g, const float *u, size_t n) {
    /* silu(g) = g s, s = sigmoid(g);  silu'(g) = s (1 + g (1 - s)) */
    for (size_t i = 0; i < n; i++) {
        float x = g[i], ui = u[i], gi = da[i];   /* read first: dg, du may alias g, u */
        float s = 1.0f / (1.0f + expf(-x));
        du[i] = gi * x * s;
        dg[i] = gi * ui * s * (1.0f + x * (1.0f - s));
    }
}

void moe_swiglu_act_bwd(float *dg, float *du, const float *da, const float *g, const float *u, size_t n) {
    int avx2 = moe_simd_level() >= MOE_SIMD_AVX2;
    long nb = (long)((n + VBLOCK - 1) / VBLOCK);
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * VBLOCK, m = n - i0 < VBLOCK ? n - i0 : VBLOCK;
        if (avx2) moe_swiglu_act_bwd_avx2(dg + i0, du + i0, da + i0, g + i0, u + i0, m);
        else moe_swiglu_act_bwd_ref(dg + i0, du + i0, da + i0, g + i0, u + i0, m);
    }
}

double moe_xent_fwd(float *probs, double *losses, const float *logits, const int32_t *targets, int N, int V) {
    #pragma omp parallel for schedule(static) if ((size_t)N * V > 65536)
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * V;
        float *p = probs + (size_t)t * V;
        float mx = l[0];
        for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        float lt_logit = l[targets[t]] - mx;   /* before p (which may alias l) is written */
        double s = 0;
        for (int i = 0; i < V; i++) s += (p[i] = expf(l[i] - mx));
        float inv = (float)(1.0 / s);
        double lt = log(s) - (double)lt_logit;
        for (int i = 0; i < V; i++) p[i] *= inv;
        losses[t] = lt;   /* in double: float would round the loss to 2e-7 */
    }
    double total = 0; /* summed in order: the same on any thread count */
    for (int t = 0; t < N; t++) total += losses[t];
    return total / N;
}

void moe_xent_bwd(float *dlogits, const float *probs, const int32_t *targets, int N, int V, float scale) {
    #pragma omp parallel for schedule(static) if ((size_t)N * V > 65536)
    for (int t = 0; t < N; t++) {
        const float *p = probs + (size_t)t * V;
        float *d = dlogits + (size_t)t * V;
        for (int i = 0; i < V; i++) d[i] = p[i] * scale;
        d[targets[t]] -= scale;
    }
}

/* The same attention through the products of tgemm.h, one (sequence, head) at a time: S = Q K^T,
 * masked softmax in place, O = P V. Rows go in blocks of AB so that each block multiplies only the
 * keys it can see (the causal mask skips about 3/8 of a full T x T product at T = 128); inside a
 * block the few masked entries are computed and zeroed. Keys and values are transposed once
 * for the whole batch. Falls back to the loops above if scratch memory is short. */
#define AB 32
void moe_attn_fwd(float *o, float *att, const float *q, const float *k, const float *v, int B, int T, int H, int KV,
                  int hd, float scale) {
    int group = H / KV, avx2 = moe_simd_level() >= MOE_SIMD_AVX2;
    size_t kvd = (size_t)KV * hd, qd = (size_t)H * hd;
    float *kT = moe_alloc((size_t)B * KV * hd * T * sizeof(float));
    if (!kT) { moe_attn_fwd_ref(o, att, q, k, v, B, T, H, KV, hd, scale); return; }
    /* kT[b][g][i][t] = k[b][t][g][i] */
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < hd; i++)
                    kT[(((size_t)b * KV + g) * hd + i) * T + t] = k[((size_t)b * T + t) * kvd + (size_t)g * hd + i];
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / group;
            float *P = att + ((size_t)b * H + h) * T * T;
            const float *qb = q + (size_t)b * T * qd + (size_t)h * hd;
            const float *kTb = kT + ((size_t)b * KV + g) * hd * T;
            /* causal: a block of query rows [r0, r1) needs key columns [0, r1) only */
            for (int r0 = 0; r0 < T; r0 += AB) {
                int r1 = r0 + AB < T ? r0 + AB : T;
                moe_tgemm(P + (size_t)r0 * T, (size_t)T, qb + (size_t)r0 * qd, qd, kTb, (size_t)T, r1 - r0, r1, hd, 0);
            }
            for (int t = 0; t < T; t++) {
                float *p = P + (size_t)t * T, mx = -INFINITY;
                for (int j = 0; j <= t; j++) {
                    p[j] *= scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                if (avx2) moe_vexp_shift_avx2(p, p, mx, (size_t)t + 1);
                else for (int j = 0; j <= t; j++) p[j] = expf(p[j] - mx);
                float sum = 0;
                for (int j = 0; j <= t; j++) sum += p[j];
                float inv = 1.0f / sum;
                for (int j = 0; j <= t; j++) p[j] *= inv;
                for (int j = t + 1; j < T; j++) p[j] = 0;
            }
            for (int r0 = 0; r0 < T; r0 += AB) {   /* P[t][j] = 0 for j > t */
                int r1 = r0 + AB < T ? r0 + AB : T;
                moe_tgemm(o + ((size_t)b * T + r0) * qd + (size_t)h * hd, qd, P + (size_t)r0 * T, (size_t)T,
                          v + (size_t)b * T * kvd + (size_t)g * hd, kvd, r1 - r0, hd, r1, 0);
            }
        }
    moe_free(kT);
}

void moe_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v,
                  const float *att, int B, int T, int H, int KV, int hd, float scale) {
    int group = H / KV, nth = omp_get_max_threads();
    size_t kvd = (size_t)KV * hd, qd = (size_t)H * hd, TT = (size_t)T * T;
    float *vT = moe_alloc((size_t)B * KV * hd * T * sizeof(float));
    float *work = moe_alloc((size_t)nth * TT * sizeof(float));
    if (!vT || !work) {
        moe_free(vT); moe_free(work);
        moe_attn_bwd_ref(dq, dk, dv, dout, q, k, v, att, B, T, H, KV, hd, scale);
        return;
    }
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < hd; i++)
                    vT[(((size_t)b * KV + g) * hd + i) * T + t] = v[((size_t)b * T + t) * kvd + (size_t)g * hd + i];
    /* one task per (sequence, kv head): it owns dk and dv of its rows and dq of its query heads */
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KV; g++) {
            float *dP = work + (size_t)omp_get_thread_num() * TT;
            float *dkb = dk + (size_t)b * T * kvd + (size_t)g * hd, *dvb = dv + (size_t)b * T * kvd + (size_t)g * hd;
            const float *kb = k + (size_t)b * T * kvd + (size_t)g * hd;
            for (int hh = 0; hh < group; hh++) {
                int h = g * group + hh;
                const float *P = att + ((size_t)b * H + h) * TT;
                const float *go = dout + (size_t)b * T * qd + (size_t)h * hd, *qb = q + (size_t)b * T * qd + (size_t)h * hd;
                /* dV += P^T dO: key rows [j0, j1) see query rows [j0, T) */
                for (int j0 = 0; j0 < T; j0 += AB) {
                    int j1 = j0 + AB < T ? j0 + AB : T;
                    moe_tgemm_ex(dvb + (size_t)j0 * kvd, kvd, P + (size_t)j0 * T + j0, 1, (size_t)T, go + (size_t)j0 * qd,
                                 qd, j1 - j0, hd, T - j0, hh > 0);
                }
                /* dP = dO V^T ;  dS = P (dP - rowsum(P dP)) scale */
                for (int r0 = 0; r0 < T; r0 += AB) {
                    int r1 = r0 + AB < T ? r0 + AB : T;
                    moe_tgemm(dP + (size_t)r0 * T, (size_t)T, go + (size_t)r0 * qd, qd, vT + ((size_t)b * KV + g) * hd * T,
                              (size_t)T, r1 - r0, r1, hd, 0);
                }
                for (int t = 0; t < T; t++) {
                    const float *p = P + (size_t)t * T;
                    float *ds = dP + (size_t)t * T;
                    double dot = 0;
                    for (int j = 0; j <= t; j++) dot += (double)p[j] * ds[j];
                    for (int j = 0; j <= t; j++) ds[j] = p[j] * (ds[j] - (float)dot) * scale;
                    for (int j = t + 1; j < T; j++) ds[j] = 0;
                }
                /* dQ = dS K ;  dK += dS^T Q (dS[t][j] = 0 for j > t) */
                for (int r0 = 0; r0 < T; r0 += AB) {
                    int r1 = r0 + AB < T ? r0 + AB : T;
                    moe_tgemm(dq + ((size_t)b * T + r0) * qd + (size_t)h * hd, qd, dP + (size_t)r0 * T, (size_t)T, kb, kvd,
                              r1 - r0, hd, r1, 0);
                    moe_tgemm_ex(dkb + (size_t)r0 * kvd, kvd, dP + (size_t)r0 * T + r0, 1, (size_t)T, qb + (size_t)r0 * qd,
                                 qd, r1 - r0, hd, T - r0, hh > 0);
                }
            }
        }
    moe_free(vT);
    moe_free(work);
}
