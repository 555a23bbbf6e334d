/* deltanet.c - gated DeltaNet layer (see deltanet.h). Heads run in parallel; each thread gathers its
 * value head's q, k, v, decay and beta into contiguous rows and runs the delta rule on them. */
#include "model/deltanet.h"
#include "core/delta_rule.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define DELTA_CHUNK 64   /* transformers' chunk_size */

static int conv_channels(const moe_config *c) { return 2 * c->lin_k_heads * c->lin_k_dim + c->lin_v_heads * c->lin_v_dim; }

size_t moe_deltanet_conv_floats(const moe_config *c) { return (size_t)(c->lin_conv - 1) * conv_channels(c); }
size_t moe_deltanet_state_floats(const moe_config *c) { return (size_t)c->lin_v_heads * c->lin_v_dim * c->lin_k_dim; }

/* torch.nn.functional.softplus (beta 1, threshold 20) */
static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* x * rsqrt(sum x^2 + eps) * scale (transformers' l2norm, eps 1e-6) */
static void l2norm(float *y, const float *x, int n, float scale) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)ss + 1e-6f);
    for (int i = 0; i < n; i++) y[i] = x[i] * inv * scale;
}

moe_status moe_deltanet_forward(const moe_model *m, int layer, const float *h, int n, const moe_attn_seq *seqs,
                                int n_seqs, float *out, moe_arena *scratch) {
    const moe_config *c = &m->cfg;
    const moe_deltanet_weights *w = &m->blocks[layer].lin;
    const int d = c->hidden, Hk = c->lin_k_heads, Hv = c->lin_v_heads, dk = c->lin_k_dim, dv = c->lin_v_dim;
    const int K = c->lin_conv, r = Hv / Hk, kd = Hk * dk, vd = Hv * dv, C = 2 * kd + vd;
    const int pw = 2 * kd + 2 * vd, group = 2 * dk + 2 * r * dv;
    const size_t conv_floats = moe_deltanet_conv_floats(c);
    int nth = omp_get_max_threads(), max_n = 0, any_chunked = 0;
    double work = 0;
    for (int i = 0; i < n_seqs; i++) {
        max_n = seqs[i].n > max_n ? seqs[i].n : max_n;
        any_chunked |= !(seqs[i].n == 1 && seqs[i].pos0 > 0);
        work += (double)seqs[i].n * dk * dv * Hv;
    }
    size_t per_thread = (size_t)max_n * (2 * dk + 2 * dv + 2) + (any_chunked ? moe_delta_chunk_scratch(DELTA_CHUNK, dk, dv) : 0);
    /* mixed: per sequence, its K-1 remembered inputs then its new rows: sequence i starts at row row0 + i(K-1) */
    float *proj = moe_arena_alloc(scratch, (size_t)n * pw * 4), *ba = moe_arena_alloc(scratch, (size_t)n * 2 * Hv * 4);
    float *mixed = moe_arena_alloc(scratch, ((size_t)n + (size_t)n_seqs * (K - 1)) * C * 4), *conv = moe_arena_alloc(scratch, (size_t)n * C * 4);
    float *z = moe_arena_alloc(scratch, (size_t)n * vd * 4), *o = moe_arena_alloc(scratch, (size_t)n * vd * 4);
    float *beta = moe_arena_alloc(scratch, (size_t)n * Hv * 4), *g = moe_arena_alloc(scratch, (size_t)n * Hv * 4);
    float *tls = moe_arena_alloc(scratch, (size_t)nth * per_thread * 4);
    if (!proj || !ba || !mixed || !conv || !z || !o || !beta || !g || !tls)
        return moe_fail(MOE_ENOMEM, "linear attention: out of memory for %d tokens", n);
    for (int i = 0; i < n_seqs; i++)
        if (seqs[i].pos0 == 0) {   /* a new sequence: no inputs before it, an empty state (its own only) */
            memset(seqs[i].kv->conv, 0, conv_floats * 4);
            memset(seqs[i].kv->rec, 0, moe_deltanet_state_floats(c) * 4);
        }
    const moe_matmul_job jobs[2] = {{proj, (size_t)pw, h, (size_t)d, n, w->in_qkvz.dtype, w->in_qkvz.data, pw, d},
                                    {ba, (size_t)2 * Hv, h, (size_t)d, n, w->in_ba.dtype, w->in_ba.data, 2 * Hv, d}};
    moe_matmul_many(jobs, 2);
    /* ungroup: rows of `mixed` are [q (Hk*dk) | k (Hk*dk) | v (Hv*dv)] after the K-1 remembered inputs */
    for (int i = 0; i < n_seqs; i++) {
        float *mx = mixed + ((size_t)seqs[i].row0 + (size_t)i * (K - 1)) * C;
        memcpy(mx, seqs[i].kv->conv, conv_floats * 4);
        for (int t = seqs[i].row0; t < seqs[i].row0 + seqs[i].n; t++) {
            float *row = mx + (size_t)(K - 1 + t - seqs[i].row0) * C;
            for (int gk = 0; gk < Hk; gk++) {
                const float *src = proj + (size_t)t * pw + (size_t)gk * group;
                memcpy(row + gk * dk, src, (size_t)dk * 4);
                memcpy(row + kd + gk * dk, src + dk, (size_t)dk * 4);
                memcpy(row + 2 * kd + gk * r * dv, src + 2 * dk, (size_t)r * dv * 4);
                memcpy(z + (size_t)t * vd + gk * r * dv, src + 2 * dk + r * dv, (size_t)r * dv * 4);
                const float *bsrc = ba + (size_t)t * 2 * Hv + (size_t)gk * 2 * r;
                for (int j = 0; j < r; j++) {
                    int hv = gk * r + j;
                    beta[(size_t)t * Hv + hv] = 1.0f / (1.0f + expf(-bsrc[j]));
                    g[(size_t)t * Hv + hv] = -expf(w->a_log[hv]) * softplus(bsrc[r + j] + w->dt_bias[hv]);
                }
            }
        }
        memcpy(seqs[i].kv->conv, mx + (size_t)seqs[i].n * C, conv_floats * 4);
        /* causal depthwise convolution, then silu */
        for (int t = 0; t < seqs[i].n; t++)
            for (int ch = 0; ch < C; ch++) {
                const float *wc = w->conv + (size_t)ch * K;
                float s = 0;
                for (int j = 0; j < K; j++) s += wc[j] * mx[(size_t)(t + j) * C + ch];
                conv[(size_t)(seqs[i].row0 + t) * C + ch] = s / (1.0f + expf(-s));
            }
    }
    const float qscale = 1.0f / sqrtf((float)dk);
    /* (sequence, value head) tasks: a batch of single-token sequences forks once per layer */
    #pragma omp parallel for schedule(dynamic, 1) if (n_seqs * Hv > 1 && work > 65536.0)
    for (int task = 0; task < n_seqs * Hv; task++) {
        const moe_attn_seq *sq = &seqs[task / Hv];
        int hv = task % Hv, hk = hv / r, ns = sq->n, recurrent = ns == 1 && sq->pos0 > 0;
        float *q = tls + (size_t)omp_get_thread_num() * per_thread, *k = q + (size_t)ns * dk, *v = k + (size_t)ns * dk;
        float *oh = v + (size_t)ns * dv, *gh = oh + (size_t)ns * dv, *bh = gh + ns, *cs = bh + ns;
        for (int t = 0; t < ns; t++) {
            size_t row = (size_t)sq->row0 + t;
            const float *cr = conv + row * C;
            l2norm(q + (size_t)t * dk, cr + hk * dk, dk, qscale);
            l2norm(k + (size_t)t * dk, cr + kd + hk * dk, dk, 1.0f);
            memcpy(v + (size_t)t * dv, cr + 2 * kd + hv * dv, (size_t)dv * 4);
            gh[t] = g[row * Hv + hv];
            bh[t] = beta[row * Hv + hv];
        }
        float *st = sq->kv->rec + (size_t)hv * dv * dk;
        if (recurrent) moe_delta_step(st, dk, dv, q, k, v, expf(gh[0]), bh[0], oh);
        else moe_delta_chunked(st, dk, dv, ns, q, k, v, gh, bh, oh, DELTA_CHUNK, cs);
        for (int t = 0; t < ns; t++)
            memcpy(o + ((size_t)sq->row0 + t) * vd + hv * dv, oh + (size_t)t * dv, (size_t)dv * 4);
    }
    /* gated RMSNorm per value head: norm(o) * w * silu(z) */
    moe_rmsnorm(o, o, w->norm, n * Hv, dv, c->rms_eps);
    moe_silu_mul(z, o, (size_t)n * vd);
    moe_matmul(out, z, n, w->out.dtype, w->out.data, d, vd);
    return MOE_OK;
}
