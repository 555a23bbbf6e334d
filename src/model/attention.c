/* attention.c - GQA and MLA (see attention.h). Scores and softmax in f32 like transformers' eager path.
 * GQA's variants: q/k norms before RoPE (Qwen3, OLMoE) or without a gain after it (Llama 4), clamping,
 * partial rotary (the first rope.dim coordinates of each head), layers without RoPE whose queries are
 * temperature-scaled (Llama 4), sliding windows or chunks, and an output gate from q_proj (Qwen3-Next).
 * Linear-attention layers go to deltanet.c.
 * The input rows may belong to several sequences (a batched step): projections run over all rows at
 * once, RoPE, temperature and the cache write use each row's own sequence and position, and each row
 * attends only to its own sequence's cache (a linear-attention layer updates its own sequence's state). */
#include "model/attention.h"
#include "model/deltanet.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include <math.h>
#include <omp.h>
#include <string.h>

void moe_attention_dims(const moe_config *c, int *n_kv, int *k_dim, int *v_dim) {
    if (c->mla) {
        *n_kv = c->n_heads;
        *k_dim = c->qk_nope_dim + c->qk_rope_dim;
        *v_dim = c->v_head_dim;
    } else {
        *n_kv = c->n_kv_heads;
        *k_dim = *v_dim = c->head_dim;
    }
}

static void add_bias(float *y, const float *b, int n, int width) {
    if (!b) return;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < width; i++) y[(size_t)t * width + i] += b[i];
}

/* q [n_rows][H][dk], each row against its own sequence's cache rows 0..pos; out [n_rows][H][dv].
 * The (row, head) tasks of all sequences form one parallel loop, so a batch of single-token sequences
 * forks once per layer, not once per sequence; every task's arithmetic is the same whatever the batch.
 * A sliding window keeps the last `window` positions; chunked attention (Llama 4) the positions of the
 * query's own chunk of `chunk` positions.
 * sinks [H] (or NULL): a logit per head that joins the softmax without a value (gpt-oss), so the
 * weights of the real positions sum to less than 1. */
static moe_status attend(const float *q, const moe_attn_seq *seqs, int n_seqs, int n_rows, int H, int KV, int dk,
                         int dv, float scale, int window, int chunk, const float *sinks, float *out, moe_arena *scratch) {
    int group = H / KV, max_ctx = 0;
    double work = 0;
    int nth = omp_get_max_threads();
    int *row_seq = moe_arena_alloc(scratch, sizeof(int) * (size_t)n_rows);
    if (!row_seq) return moe_fail(MOE_ENOMEM, "attention: out of memory for %d rows", n_rows);
    for (int i = 0; i < n_seqs; i++) {
        int ctx = seqs[i].pos0 + seqs[i].n;
        max_ctx = ctx > max_ctx ? ctx : max_ctx;
        work += (double)seqs[i].n * H * ctx * dk;
        for (int t = 0; t < seqs[i].n; t++) row_seq[seqs[i].row0 + t] = i;
    }
    float *scores = moe_arena_alloc(scratch, (size_t)nth * max_ctx * sizeof(float));
    if (!scores) return moe_fail(MOE_ENOMEM, "attention: out of memory for %d positions", max_ctx);
    #pragma omp parallel for schedule(dynamic, 1) if (n_rows * H > 1 && work > 65536.0)
    for (int th = 0; th < n_rows * H; th++) {
        int r = th / H, h = th % H, g = h / group;
        const moe_attn_seq *sq = &seqs[row_seq[r]];
        const moe_kv_layer *kv = sq->kv;
        int p = sq->pos0 + (r - sq->row0);
        float *s = scores + (size_t)omp_get_thread_num() * max_ctx;
        const float *qv = q + ((size_t)r * H + h) * dk;
        int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
        if (chunk > 0 && p - p % chunk > lo) lo = p - p % chunk;
        float mx = -INFINITY;
        for (int j = lo; j <= p; j++) {
            const float *kr = kv->k + ((size_t)j * KV + g) * dk;
            s[j] = moe_dot(qv, kr, dk) * scale;
            mx = s[j] > mx ? s[j] : mx;
        }
        float sum = 0;
        if (sinks) {
            mx = sinks[h] > mx ? sinks[h] : mx;
            sum = expf(sinks[h] - mx);
        }
        for (int j = lo; j <= p; j++) sum += (s[j] = expf(s[j] - mx));
        float inv = 1.0f / sum;
        float *o = out + ((size_t)r * H + h) * dv;
        memset(o, 0, sizeof(float) * (size_t)dv);
        for (int j = lo; j <= p; j++) {
            const float *vr = kv->v + ((size_t)j * KV + g) * dv;
            float w = s[j] * inv;
            moe_axpy(o, w, vr, dv);
        }
    }
    return MOE_OK;
}

static void clamp(float *x, size_t n, float c) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > c ? c : x[i] < -c ? -c : x[i];
}

/* Llama 4's temperature tuning of the NoPE layers' queries, in float32 like transformers */
static float temperature(const moe_config *c, int pos) {
    return log1pf(floorf(((float)pos + 1.0f) / (float)c->temp_floor)) * (float)c->temp_scale + 1.0f;
}

static moe_status gqa_forward(const moe_model *m, int layer, const float *h, int n, const moe_attn_seq *seqs,
                              int n_seqs, float *out, moe_arena *scratch) {
    const moe_config *c = &m->cfg;
    const moe_attn_weights *a = &m->blocks[layer].attn;
    int d = c->hidden, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim, qd = H * hd, kvd = KV * hd;
    int gated = c->attn_out_gate, qrows = gated ? 2 * qd : qd, rope = !c->nope[layer];
    float *qp = moe_arena_alloc(scratch, (size_t)n * qrows * 4), *k = moe_arena_alloc(scratch, (size_t)n * kvd * 4), *v = moe_arena_alloc(scratch, (size_t)n * kvd * 4);
    float *o = moe_arena_alloc(scratch, (size_t)n * qd * 4), *cs = moe_arena_alloc(scratch, (size_t)hd * 4), *sn = moe_arena_alloc(scratch, (size_t)hd * 4);
    float *q = gated ? moe_arena_alloc(scratch, (size_t)n * qd * 4) : qp, *gate = qp;
    moe_status st = MOE_OK;
    if (!qp || !q || !k || !v || !o || !cs || !sn) { st = moe_fail(MOE_ENOMEM, "attention: out of memory"); goto done; }
    /* q, k and v in one parallel region: for decode each is a short product, and one fork/join
     * with the work cut by bytes keeps both threads streaming (bit-identical to three calls) */
    const moe_matmul_job qkv[3] = {{qp, (size_t)qrows, h, (size_t)d, n, a->wq.dtype, a->wq.data, qrows, d},
                                   {k, (size_t)kvd, h, (size_t)d, n, a->wk.dtype, a->wk.data, kvd, d},
                                   {v, (size_t)kvd, h, (size_t)d, n, a->wv.dtype, a->wv.data, kvd, d}};
    moe_matmul_many(qkv, 3);
    add_bias(qp, a->bq, n, qrows);
    if (gated) {   /* per head [query | gate]: queries to q, gates packed in place at the front of qp */
        for (int t = 0; t < n; t++)
            for (int hh = 0; hh < H; hh++) {
                const float *src = qp + (size_t)t * qrows + (size_t)hh * 2 * hd;
                memcpy(q + (size_t)t * qd + hh * hd, src, (size_t)hd * 4);
                memmove(gate + (size_t)t * qd + hh * hd, src + hd, (size_t)hd * 4);
            }
    }
    add_bias(k, a->bk, n, kvd);
    add_bias(v, a->bv, n, kvd);
    if (c->qk_norm == MOE_QKNORM_FULL) {
        moe_rmsnorm(q, q, a->q_norm, n, qd, c->rms_eps);
        moe_rmsnorm(k, k, a->k_norm, n, kvd, c->rms_eps);
    } else if (c->qk_norm == MOE_QKNORM_HEAD) {
        moe_rmsnorm(q, q, a->q_norm, n * H, hd, c->rms_eps);
        moe_rmsnorm(k, k, a->k_norm, n * KV, hd, c->rms_eps);
    }
    if (c->clip_qkv > 0) {
        clamp(q, (size_t)n * qd, (float)c->clip_qkv);
        clamp(k, (size_t)n * kvd, (float)c->clip_qkv);
        clamp(v, (size_t)n * kvd, (float)c->clip_qkv);
    }
    for (int i = 0; i < n_seqs && rope; i++) {
        const moe_attn_seq *sq = &seqs[i];
        for (int t = sq->row0; t < sq->row0 + sq->n; t++) {
            moe_rope_cossin(&m->rope, sq->pos0 + t - sq->row0, cs, sn);
            for (int hh = 0; hh < H; hh++) moe_rope_rotate(&m->rope, q + (size_t)t * qd + hh * hd, cs, sn);
            for (int hh = 0; hh < KV; hh++) moe_rope_rotate(&m->rope, k + (size_t)t * kvd + hh * hd, cs, sn);
        }
    }
    if (c->qk_norm == MOE_QKNORM_HEAD_UNIT_POST && rope) {   /* RMSNorm without a gain, after RoPE */
        for (int i = 0; i < hd; i++) cs[i] = 1.0f;
        moe_rmsnorm(q, q, cs, n * H, hd, c->rms_eps);
        moe_rmsnorm(k, k, cs, n * KV, hd, c->rms_eps);
    }
    for (int i = 0; i < n_seqs; i++) {
        const moe_attn_seq *sq = &seqs[i];
        for (int t = sq->row0; t < sq->row0 + sq->n && c->temp_tuning && !rope; t++) {
            float s = temperature(c, sq->pos0 + t - sq->row0);
            for (int j = 0; j < qd; j++) q[(size_t)t * qd + j] *= s;
        }
        memcpy(sq->kv->k + (size_t)sq->pos0 * kvd, k + (size_t)sq->row0 * kvd, (size_t)sq->n * kvd * 4);
        memcpy(sq->kv->v + (size_t)sq->pos0 * kvd, v + (size_t)sq->row0 * kvd, (size_t)sq->n * kvd * 4);
    }
    st = attend(q, seqs, n_seqs, n, H, KV, hd, hd, (float)c->attn_scale, c->sliding_window[layer], c->attn_chunk[layer],
                a->sinks, o, scratch);
    if (st == MOE_OK && gated)
        for (size_t i = 0; i < (size_t)n * qd; i++) o[i] *= 1.0f / (1.0f + expf(-gate[i]));
    if (st == MOE_OK) {
        moe_matmul(out, o, n, a->wo.dtype, a->wo.data, d, qd);
        add_bias(out, a->bo, n, d);
    }
done:
    return st;
}

/* DeepSeek MLA as transformers computes it: keys and values are expanded per head from the latent
 * (the cache holds the expanded keys and values). */
static moe_status mla_forward(const moe_model *m, int layer, const float *h, int n, const moe_attn_seq *seqs,
                              int n_seqs, float *out, moe_arena *scratch) {
    const moe_config *c = &m->cfg;
    const moe_attn_weights *a = &m->blocks[layer].attn;
    int d = c->hidden, H = c->n_heads, nope = c->qk_nope_dim, rd = c->qk_rope_dim, vd = c->v_head_dim;
    int qk = nope + rd, lora = c->kv_lora_rank, kva_w = lora + rd, kvb_w = H * (nope + vd);
    const double mla_eps = 1e-6; /* transformers builds these two norms with the default eps */
    size_t qa_w = c->q_lora_rank ? (size_t)c->q_lora_rank : 1;
    float *qa = moe_arena_alloc(scratch, (size_t)n * qa_w * 4), *q = moe_arena_alloc(scratch, (size_t)n * H * qk * 4);
    float *kva = moe_arena_alloc(scratch, (size_t)n * kva_w * 4), *lat = moe_arena_alloc(scratch, (size_t)n * lora * 4);
    float *kvb = moe_arena_alloc(scratch, (size_t)n * kvb_w * 4), *o = moe_arena_alloc(scratch, (size_t)n * H * vd * 4);
    float *cs = moe_arena_alloc(scratch, (size_t)rd * 4), *sn = moe_arena_alloc(scratch, (size_t)rd * 4), *kr = moe_arena_alloc(scratch, (size_t)rd * 4);
    moe_status st = MOE_OK;
    if (!qa || !q || !kva || !lat || !kvb || !o || !cs || !sn || !kr) {
        st = moe_fail(MOE_ENOMEM, "attention: out of memory");
        goto done;
    }
    if (c->q_lora_rank) {
        moe_matmul(qa, h, n, a->wq_a.dtype, a->wq_a.data, c->q_lora_rank, d);
        add_bias(qa, a->bq_a, n, c->q_lora_rank);
        moe_rmsnorm(qa, qa, a->q_a_norm, n, c->q_lora_rank, mla_eps);
        moe_matmul(q, qa, n, a->wq_b.dtype, a->wq_b.data, H * qk, c->q_lora_rank);
    } else {
        moe_matmul(q, h, n, a->wq.dtype, a->wq.data, H * qk, d);
    }
    moe_matmul(kva, h, n, a->wkv_a.dtype, a->wkv_a.data, kva_w, d);
    add_bias(kva, a->bkv_a, n, kva_w);
    for (int t = 0; t < n; t++) memcpy(lat + (size_t)t * lora, kva + (size_t)t * kva_w, (size_t)lora * 4);
    moe_rmsnorm(lat, lat, a->kv_a_norm, n, lora, mla_eps);
    moe_matmul(kvb, lat, n, a->wkv_b.dtype, a->wkv_b.data, kvb_w, lora);
    for (int i = 0; i < n_seqs; i++) {
        const moe_kv_layer *kv = seqs[i].kv;
        for (int t = seqs[i].row0; t < seqs[i].row0 + seqs[i].n; t++) {
            int p = seqs[i].pos0 + t - seqs[i].row0;
            moe_rope_cossin(&m->rope, p, cs, sn);
            memcpy(kr, kva + (size_t)t * kva_w + lora, (size_t)rd * 4);
            moe_rope_rotate(&m->rope, kr, cs, sn);
            for (int hh = 0; hh < H; hh++) {
                float *qh = q + ((size_t)t * H + hh) * qk;
                moe_rope_rotate(&m->rope, qh + nope, cs, sn);
                const float *src = kvb + (size_t)t * kvb_w + (size_t)hh * (nope + vd);
                float *kd = kv->k + ((size_t)p * H + hh) * qk, *vdst = kv->v + ((size_t)p * H + hh) * vd;
                memcpy(kd, src, (size_t)nope * 4);
                memcpy(kd + nope, kr, (size_t)rd * 4);
                memcpy(vdst, src + nope, (size_t)vd * 4);
            }
        }
    }
    st = attend(q, seqs, n_seqs, n, H, H, qk, vd, (float)c->attn_scale, c->sliding_window[layer], c->attn_chunk[layer],
                NULL, o, scratch);
    if (st == MOE_OK) {
        moe_matmul(out, o, n, a->wo.dtype, a->wo.data, d, H * vd);
        add_bias(out, a->bo, n, d);
    }
done:
    return st;
}

moe_status moe_attention_forward_seqs(const moe_model *m, int layer, const float *h, int n_rows, const moe_attn_seq *seqs,
                                      int n_seqs, float *out, moe_arena *scratch) {
    moe_arena_mark mark = moe_arena_push(scratch);
    moe_status st = m->cfg.mixer[layer] == MOE_MIXER_DELTANET
                        ? moe_deltanet_forward(m, layer, h, n_rows, seqs, n_seqs, out, scratch)
                    : m->cfg.mla ? mla_forward(m, layer, h, n_rows, seqs, n_seqs, out, scratch)
                                 : gqa_forward(m, layer, h, n_rows, seqs, n_seqs, out, scratch);
    moe_arena_pop(scratch, mark);
    return st;
}

moe_status moe_attention_forward(const moe_model *m, int layer, const float *h, int n, int pos0, moe_kv_layer *kv,
                                 float *out, moe_arena *scratch) {
    const moe_attn_seq one = {0, n, pos0, kv};
    return moe_attention_forward_seqs(m, layer, h, n, &one, 1, out, scratch);
}
