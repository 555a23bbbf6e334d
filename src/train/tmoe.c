/* tmoe.c - the training MoE block (see tmoe.h). */
#include "train/tmoe.h"
#include "core/alloc.h"
#include "core/error.h"
#include "train/tgemm.h"
#include "train/tops.h"
#include <omp.h>
#include <string.h>

static moe_status need(float **p, size_t *cap, size_t n) {
    if (n <= *cap) return MOE_OK;
    moe_free(*p);
    *p = moe_alloc(n * sizeof(float));
    *cap = *p ? n : 0;
    return *p ? MOE_OK : moe_fail(MOE_ENOMEM, "MoE layer: out of memory for %zu floats", n);
}

moe_status moe_tmoe_init(moe_tmoe *m, const moe_tconfig *c, int N, int layer) {
    memset(m, 0, sizeof *m);
    m->N = N;
    m->T = c->seq_len;
    m->d = c->d_model;
    m->E = c->n_experts;
    m->de = c->d_expert;
    m->ds = c->n_shared * c->d_expert;
    m->nl = moe_tconfig_n_logits(c);
    m->router.ops = moe_router_find(c->router);
    if (!m->router.ops) return moe_fail(MOE_EUSAGE, "no router named %s", c->router);
    moe_tconfig_router_params(c, &m->router.p);
    m->soft = m->router.ops->kind == MOE_ROUTE_SOFT;
    m->aoe = m->router.ops->expert_gate_factored;
    m->rank = c->aoe_rank;
    m->S = c->slots;
    m->router.gate.dtype = MOE_F32;
    m->router.gate.ndim = 2;
    m->router.gate.shape[0] = m->nl;
    m->router.gate.shape[1] = m->d;
    m->in = (moe_route_in){NULL, N, m->T, NULL, NULL, layer, 0, NULL};
    MOE_TRY(moe_assign_init(&m->as, N, m->E, m->nl > 0 ? m->nl : 1));
    size_t nl = (size_t)(m->nl > 0 ? m->nl : 1), nE = (size_t)N * m->E, wide = nl > (size_t)m->E ? nl : (size_t)m->E;
    m->logits = moe_calloc((size_t)N * nl, 4);
    m->d_logits = moe_calloc((size_t)N * nl, 4);
    m->d_aux_logits = moe_calloc((size_t)N * nl, 4);
    m->d_probs = moe_calloc((size_t)N * wide, 4);
    m->d_w = moe_calloc(nE > (size_t)N * nl ? nE : (size_t)N * nl, 4);
    m->offset = moe_calloc((size_t)m->E + 1, sizeof(int));
    m->row_of = moe_calloc(nE + 1, sizeof(int));
    m->load = moe_calloc((size_t)m->E, sizeof(int));
    if (m->ds) {
        m->sg = moe_alloc((size_t)N * m->ds * 4);
        m->su = moe_alloc((size_t)N * m->ds * 4);
        m->sa = moe_alloc((size_t)N * m->ds * 4);
        /* sy: the shared output [N][d] in the forward, the backward's da [N][ds]: the wider of the two */
        m->sy = moe_alloc((size_t)N * (m->ds > m->d ? m->ds : m->d) * 4);
    }
    if (!m->logits || !m->d_logits || !m->d_aux_logits || !m->d_probs || !m->d_w || !m->offset || !m->row_of ||
        !m->load || (m->ds && (!m->sg || !m->su || !m->sa || !m->sy)))
        return moe_fail(MOE_ENOMEM, "MoE layer: out of memory for %d tokens", N);
    return MOE_OK;
}

void moe_tmoe_free(moe_tmoe *m) {
    moe_assign_free(&m->as);
    moe_free(m->logits); moe_free(m->d_logits); moe_free(m->d_aux_logits); moe_free(m->d_probs); moe_free(m->d_w);
    moe_free(m->offset); moe_free(m->row_of); moe_free(m->load);
    moe_free(m->xg); moe_free(m->g); moe_free(m->u); moe_free(m->y); moe_free(m->dy); moe_free(m->dx);
    moe_free(m->zg); moe_free(m->dzg); moe_free(m->sg); moe_free(m->su); moe_free(m->sa); moe_free(m->sy);
    moe_free(m->scratch); moe_free(m->escratch); moe_free(m->a);
    memset(m, 0, sizeof *m);
}

/* Experts run concurrently, one per thread at a time (dynamic schedule: their row counts differ), each
 * with its own scratch; the products inside then run on that one thread. One parallel region per
 * phase instead of a few per expert: on a busy machine every region costs a wake-up. Each expert
 * writes only its own rows and its own gradients, so the results do not depend on the schedule. */
static size_t escratch_per_thread(const moe_tmoe *m) {
    size_t rows = (size_t)m->N;
    if (m->soft && (size_t)(m->N / m->T) * m->S > rows) rows = (size_t)(m->N / m->T) * m->S;
    size_t wt = (size_t)m->de * (size_t)(m->d > m->rank ? m->d : m->rank);
    return wt + rows * (size_t)m->de + 32;
}

static moe_status need_escratch(moe_tmoe *m) {
    size_t n = escratch_per_thread(m) * (size_t)omp_get_max_threads();
    return need(&m->escratch, &m->escratch_n, n);
}

static int parallel_experts(const moe_tmoe *m) {
    return omp_get_max_threads() > 1 && !omp_in_parallel() && (double)m->cap_rows * m->d * m->de > 200000;
}

/* Scratch: first a transposed weight or a gate's W^T (moe_linear_fwd), then Soft MoE's per-sequence
 * matrices. The experts have their own per-thread scratch (escratch). */
static size_t region_w(const moe_tmoe *m) {
    size_t w = (size_t)m->d * (size_t)(m->de > m->ds ? m->de : m->ds);
    if ((size_t)m->d * m->nl > w) w = (size_t)m->d * m->nl;
    return w + 16;
}
static float *scratch_soft(moe_tmoe *m) { return m->scratch + region_w(m); }

/* Buffers for `rows` grouped rows. */
static moe_status need_rows(moe_tmoe *m, size_t rows) {
    if (rows <= m->cap_rows && m->xg) return MOE_OK;
    size_t r = rows > 0 ? rows : 1;
    moe_free(m->xg); moe_free(m->g); moe_free(m->u); moe_free(m->y); moe_free(m->dy); moe_free(m->dx);
    moe_free(m->zg); moe_free(m->dzg); moe_free(m->a);
    m->a = moe_alloc(r * m->de * 4);
    m->xg = moe_alloc(r * m->d * 4);
    m->g = moe_alloc(r * m->de * 4);
    m->u = moe_alloc(r * m->de * 4);
    m->y = moe_alloc(r * m->d * 4);
    m->dy = moe_alloc(r * m->d * 4);
    m->dx = moe_alloc(r * m->d * 4);
    m->zg = m->aoe ? moe_alloc(r * m->rank * 4) : NULL;
    m->dzg = m->aoe ? moe_alloc(r * m->rank * 4) : NULL;
    m->cap_rows = r;
    if (!m->a || !m->xg || !m->g || !m->u || !m->y || !m->dy || !m->dx || (m->aoe && (!m->zg || !m->dzg))) {
        m->cap_rows = 0;
        return moe_fail(MOE_ENOMEM, "MoE layer: out of memory for %zu expert rows", r);
    }
    size_t es = (size_t)(m->soft ? m->nl : 0), big = (size_t)(m->d > m->T ? m->d : m->T);
    MOE_TRY(need_escratch(m));
    return need(&m->scratch, &m->scratch_n, region_w(m) + 4 * es * big + 16);
}

/* Expert e's three matrices. */
static const float *w1_of(const moe_tmoe *m, const moe_tlayer *P, int e) {
    return P->ew1 + (size_t)e * m->de * (m->aoe ? m->rank : m->d);
}
static float *gw1_of(const moe_tmoe *m, moe_tlayer *G, int e) {
    return G->ew1 + (size_t)e * m->de * (m->aoe ? m->rank : m->d);
}

/* y rows = SwiGLU_e(x rows) for every expert; g, u and the activation a kept. */
static void experts_fwd(moe_tmoe *m, const moe_tlayer *P) {
    int d = m->d, de = m->de;
    size_t per = escratch_per_thread(m);
    #pragma omp parallel for schedule(dynamic, 1) if (parallel_experts(m))
    for (int e = 0; e < m->E; e++) {
        int r0 = m->offset[e], n = m->offset[e + 1] - r0;
        if (n == 0) continue;
        float *tmp = m->escratch + per * (size_t)omp_get_thread_num();
        const float *x = m->xg + (size_t)r0 * d;
        float *g = m->g + (size_t)r0 * de, *u = m->u + (size_t)r0 * de, *y = m->y + (size_t)r0 * d;
        float *act = m->a + (size_t)r0 * de;
        if (m->aoe) moe_linear_fwd(g, m->zg + (size_t)r0 * m->rank, w1_of(m, P, e), n, m->rank, de, tmp);
        else moe_linear_fwd(g, x, w1_of(m, P, e), n, d, de, tmp);
        moe_linear_fwd(u, x, P->ew3 + (size_t)e * de * d, n, d, de, tmp);
        moe_swiglu_act_fwd(act, g, u, (size_t)n * de);
        moe_linear_fwd(y, act, P->ew2 + (size_t)e * d * de, n, de, d, tmp);
    }
}

/* dx rows from dy rows; parameter gradients. Overwrites g and u with their gradients. */
static void experts_bwd(moe_tmoe *m, const moe_tlayer *P, moe_tlayer *G, float *dz /* aoe [rows][rank] or NULL */) {
    int d = m->d, de = m->de;
    size_t per = escratch_per_thread(m);
    #pragma omp parallel for schedule(dynamic, 1) if (parallel_experts(m))
    for (int e = 0; e < m->E; e++) {
        int r0 = m->offset[e], n = m->offset[e + 1] - r0;
        if (n == 0) continue;
        float *da = m->escratch + per * (size_t)omp_get_thread_num();   /* [n][de] */
        const float *x = m->xg + (size_t)r0 * d, *dy = m->dy + (size_t)r0 * d, *act = m->a + (size_t)r0 * de;
        float *g = m->g + (size_t)r0 * de, *u = m->u + (size_t)r0 * de, *dx = m->dx + (size_t)r0 * d;
        /* y = a W2^T:  da = dy W2 ; dW2 += dy^T a */
        moe_linear_bwd(da, 0, G->ew2 + (size_t)e * d * de, dy, act, P->ew2 + (size_t)e * d * de, n, de, d);
        moe_swiglu_act_bwd(g, u, da, g, u, (size_t)n * de);   /* in place: g, u <- dg, du */
        if (m->aoe) {
            const float *z = m->zg + (size_t)r0 * m->rank;
            moe_linear_bwd(dz + (size_t)r0 * m->rank, 0, gw1_of(m, G, e), g, z, w1_of(m, P, e), n, m->rank, de);
            moe_linear_bwd(dx, 0, G->ew3 + (size_t)e * de * d, u, x, P->ew3 + (size_t)e * de * d, n, d, de);
        } else {
            moe_linear_bwd(dx, 0, gw1_of(m, G, e), g, x, w1_of(m, P, e), n, d, de);
            moe_linear_bwd(dx, 1, G->ew3 + (size_t)e * de * d, u, x, P->ew3 + (size_t)e * de * d, n, d, de);
        }
    }
}

static void shared_fwd(moe_tmoe *m, const moe_tlayer *P, const float *h, float *out) {
    int N = m->N, d = m->d, ds = m->ds;
    float *tmp = m->scratch, *act = m->sa, *y = m->sy;
    moe_linear_fwd(m->sg, h, P->sw1, N, d, ds, tmp);
    moe_linear_fwd(m->su, h, P->sw3, N, d, ds, tmp);
    moe_swiglu_act_fwd(act, m->sg, m->su, (size_t)N * ds);
    moe_linear_fwd(y, act, P->sw2, N, ds, d, tmp);
    for (size_t i = 0; i < (size_t)N * d; i++) out[i] += y[i];
}

static void shared_bwd(moe_tmoe *m, const moe_tlayer *P, moe_tlayer *G, const float *h, const float *dout, float *dh) {
    int N = m->N, d = m->d, ds = m->ds;
    float *act = m->sa, *da = m->sy;
    moe_swiglu_act_fwd(act, m->sg, m->su, (size_t)N * ds);
    moe_linear_bwd(da, 0, G->sw2, dout, act, P->sw2, N, ds, d);
    moe_swiglu_act_bwd(m->sg, m->su, da, m->sg, m->su, (size_t)N * ds);
    moe_linear_bwd(dh, 1, G->sw1, m->sg, h, P->sw1, N, d, ds);
    moe_linear_bwd(dh, 1, G->sw3, m->su, h, P->sw3, N, d, ds);
}

/* Soft MoE: slot inputs are D_b^T h_b for each sequence b; rows grouped as (expert, sequence, slot). */
static size_t soft_row(const moe_tmoe *m, int e, int b, int s) {
    int B = m->N / m->T;
    return ((size_t)e * B + b) * m->S + s;
}

static void soft_fwd(moe_tmoe *m, const moe_tlayer *P, const float *h, float *out) {
    int T = m->T, B = m->N / T, d = m->d, ES = m->nl, E = m->E, S = m->S;
    float *dT = scratch_soft(m), *xs = dT + (size_t)ES * T, *ys = xs + (size_t)ES * d;
    for (int e = 0; e <= E; e++) m->offset[e] = e * B * S;
    for (int b = 0; b < B; b++) {
        moe_transpose(dT, m->as.dispatch + (size_t)b * T * ES, T, ES);              /* [ES][T] */
        moe_tgemm(xs, (size_t)d, dT, (size_t)T, h + (size_t)b * T * d, (size_t)d, ES, d, T, 0);
        for (int e = 0; e < E; e++)
            for (int s = 0; s < S; s++)
                memcpy(m->xg + soft_row(m, e, b, s) * d, xs + ((size_t)e * S + s) * d, sizeof(float) * (size_t)d);
    }
    experts_fwd(m, P);
    for (int b = 0; b < B; b++) {
        for (int e = 0; e < E; e++)
            for (int s = 0; s < S; s++)
                memcpy(ys + ((size_t)e * S + s) * d, m->y + soft_row(m, e, b, s) * d, sizeof(float) * (size_t)d);
        moe_tgemm(out + (size_t)b * T * d, (size_t)d, m->as.combine + (size_t)b * T * ES, (size_t)ES, ys, (size_t)d,
                  T, d, ES, 0);
    }
}

/* dC -> d_probs buffer, dD -> d_w buffer (both [N][ES]); dh overwritten. */
static void soft_bwd(moe_tmoe *m, const moe_tlayer *P, moe_tlayer *G, const float *h, const float *dout, float *dh) {
    int T = m->T, B = m->N / T, d = m->d, ES = m->nl, E = m->E, S = m->S;
    float *buf = scratch_soft(m);
    float *ys = buf, *yT = ys + (size_t)ES * d, *cT = yT + (size_t)ES * d, *dys = cT + (size_t)ES * T;
    for (int b = 0; b < B; b++) {
        const float *C = m->as.combine + (size_t)b * T * ES, *go = dout + (size_t)b * T * d;
        for (int e = 0; e < E; e++)
            for (int s = 0; s < S; s++)
                memcpy(ys + ((size_t)e * S + s) * d, m->y + soft_row(m, e, b, s) * d, sizeof(float) * (size_t)d);
        /* out_b = C_b Y_b:  dC_b = dout_b Y_b^T ; dY_b = C_b^T dout_b */
        moe_transpose(yT, ys, ES, d);
        moe_tgemm(m->d_probs + (size_t)b * T * ES, (size_t)ES, go, (size_t)d, yT, (size_t)ES, T, ES, d, 0);
        moe_transpose(cT, C, T, ES);
        moe_tgemm(dys, (size_t)d, cT, (size_t)T, go, (size_t)d, ES, d, T, 0);
        for (int e = 0; e < E; e++)
            for (int s = 0; s < S; s++)
                memcpy(m->dy + soft_row(m, e, b, s) * d, dys + ((size_t)e * S + s) * d, sizeof(float) * (size_t)d);
    }
    experts_bwd(m, P, G, NULL);
    for (int b = 0; b < B; b++) {
        const float *D = m->as.dispatch + (size_t)b * T * ES, *hb = h + (size_t)b * T * d;
        float *dxs = ys, *dxsT = yT;
        for (int e = 0; e < E; e++)
            for (int s = 0; s < S; s++)
                memcpy(dxs + ((size_t)e * S + s) * d, m->dx + soft_row(m, e, b, s) * d, sizeof(float) * (size_t)d);
        /* xs_b = D_b^T h_b:  dD_b = h_b dxs_b^T ; dh_b = D_b dxs_b */
        moe_transpose(dxsT, dxs, ES, d);
        moe_tgemm(m->d_w + (size_t)b * T * ES, (size_t)ES, hb, (size_t)d, dxsT, (size_t)ES, T, ES, d, 0);
        moe_tgemm(dh + (size_t)b * T * d, (size_t)d, D, (size_t)ES, dxs, (size_t)d, T, d, ES, 0);
    }
}

moe_status moe_tmoe_fwd(moe_tmoe *m, const moe_tconfig *c, const moe_tlayer *P, float *bias, const float *h,
                        const int32_t *tokens, int training, uint64_t *rng, float *out) {
    int N = m->N, d = m->d, E = m->E;
    m->router.gate.data = P->gate;
    m->router.score_bias = bias;
    m->router.score_bias_rw = bias;
    m->in.logits = m->nl > 0 ? m->logits : NULL;
    m->in.token_ids = tokens;
    m->in.training = training;
    m->in.rng = rng;
    MOE_TRY(need_rows(m, m->soft ? (size_t)(N / m->T) * E * m->S : (size_t)N * (c->top_k > 0 ? c->top_k : 1)));
    if (m->nl > 0) moe_linear_fwd(m->logits, h, P->gate, N, d, m->nl, m->scratch);
    MOE_TRY(moe_router_assign(&m->router, &m->in, &m->as));
    memset(out, 0, sizeof(float) * (size_t)N * d);
    if (m->soft) {
        soft_fwd(m, P, h, out);
    } else {
        moe_assign *a = &m->as;
        MOE_TRY(need_rows(m, (size_t)a->n));
        /* rows grouped by expert, as the inference executor runs them (stable: token order within an expert) */
        MOE_TRY(moe_assign_group(a, "MoE layer"));
        memcpy(m->offset, a->offset, sizeof(int) * (size_t)(E + 1));
        for (int r = 0; r < a->n; r++) {
            m->row_of[a->row_src[r]] = r;
            memcpy(m->xg + (size_t)r * d, h + (size_t)a->row_tok[r] * d, sizeof(float) * (size_t)d);
        }
        if (m->aoe)
            for (int i = 0; i < a->n; i++)
                memcpy(m->zg + (size_t)m->row_of[i] * m->rank, m->logits + (size_t)a->tok[i] * m->nl + (size_t)a->exp[i] * m->rank,
                       sizeof(float) * (size_t)m->rank);
        experts_fwd(m, P);
        for (int i = 0; i < a->n; i++) {
            float *o = out + (size_t)a->tok[i] * d;
            const float *y = m->y + (size_t)m->row_of[i] * d;
            float w = a->w[i];
            for (int j = 0; j < d; j++) o[j] += w * y[j];
        }
    }
    if (m->ds) shared_fwd(m, P, h, out);
    /* balancing losses (their gradients wait for the backward) */
    memset(m->d_probs, 0, sizeof(float) * (size_t)N * (m->nl > E ? m->nl : E));
    memset(m->d_aux_logits, 0, sizeof(float) * (size_t)N * (m->nl > 0 ? m->nl : 1));
    m->aux = 0;
    if (!m->soft && m->router.ops->backward) {
        m->aux += moe_loss_balance(&m->as, c->balance_loss, m->d_probs);
        m->aux += moe_loss_seq_balance(&m->as, m->T, c->top_k, c->seq_balance_loss, m->d_probs);
        if (m->nl == E) m->aux += moe_loss_z(m->logits, N, m->nl, c->z_loss, m->d_aux_logits);
    }
    moe_route_stats_of(&m->as, m->load, &m->stats);
    if (m->soft) m->stats.per_token = (double)m->nl / m->T;   /* every slot is one expert application */
    return MOE_OK;
}

void moe_tmoe_bwd(moe_tmoe *m, const moe_tconfig *c, const moe_tlayer *P, moe_tlayer *G, const float *h,
                  const float *dout, float *dh) {
    int N = m->N, d = m->d, nl = m->nl;
    moe_assign *a = &m->as;
    if (m->soft) {
        soft_bwd(m, P, G, h, dout, dh);
    } else {
        for (int i = 0; i < a->n; i++) {
            const float *go = dout + (size_t)a->tok[i] * d, *y = m->y + (size_t)m->row_of[i] * d;
            float *dy = m->dy + (size_t)m->row_of[i] * d, w = a->w[i];
            double s = 0;
            for (int j = 0; j < d; j++) {
                s += (double)go[j] * y[j];
                dy[j] = w * go[j];
            }
            m->d_w[i] = (float)s;
        }
        float *dz = m->dzg;   /* aoe: the gate factor's gradient, which lands on the router's logits */
        experts_bwd(m, P, G, dz);
        memset(dh, 0, sizeof(float) * (size_t)N * d);
        for (int i = 0; i < a->n; i++) {
            float *o = dh + (size_t)a->tok[i] * d;
            const float *g = m->dx + (size_t)m->row_of[i] * d;
            for (int j = 0; j < d; j++) o[j] += g[j];
        }
        if (nl > 0) {
            if (m->router.ops->backward)
                m->router.ops->backward(&m->router, &m->in, a, m->d_w, m->d_probs, m->d_logits);
            else
                memset(m->d_logits, 0, sizeof(float) * (size_t)N * nl);
            for (size_t i = 0; i < (size_t)N * nl; i++) m->d_logits[i] += m->d_aux_logits[i];
            if (m->aoe)
                for (int i = 0; i < a->n; i++) {
                    float *dl = m->d_logits + (size_t)a->tok[i] * nl + (size_t)a->exp[i] * m->rank;
                    const float *g = dz + (size_t)m->row_of[i] * m->rank;
                    for (int j = 0; j < m->rank; j++) dl[j] += g[j];
                }
        }
    }
    if (m->soft) m->router.ops->backward(&m->router, &m->in, a, m->d_w, m->d_probs, m->d_logits);
    if (nl > 0) moe_linear_bwd(dh, 1, G->gate, m->d_logits, h, P->gate, N, d, nl);
    if (m->ds) shared_bwd(m, P, G, h, dout, dh);
    (void)c;
}
