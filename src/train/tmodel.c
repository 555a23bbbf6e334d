/* tmodel.c - forward and backward of the whole training model (see tmodel.h). */
#include "train/tmodel.h"
#include "core/alloc.h"
#include "core/error.h"
#include "train/tgemm.h"
#include "train/tops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALLOC(p, n) do { if (!((p) = moe_alloc((size_t)(n) * sizeof *(p)))) goto oom; } while (0)

moe_status moe_tmodel_new(const moe_tconfig *cfg, int B, moe_tmodel **out) {
    *out = NULL;
    moe_tmodel *m = calloc(1, sizeof *m);
    if (!m) return moe_fail(MOE_ENOMEM, "out of memory");
    m->cfg = *cfg;
    const moe_tconfig *c = &m->cfg;
    moe_status st = moe_tparams_new(c, &m->p);
    if (st) { free(m); return st; }
    int T = c->seq_len, N = B * T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    size_t qd = (size_t)H * hd, kvd = (size_t)KV * hd, V = (size_t)c->vocab, ff = (size_t)c->d_ff;
    m->B = B; m->T = T; m->N = N;
    m->rng = moe_hash64((uint64_t)c->seed ^ 0x7468726f72ULL);
    m->act = calloc((size_t)c->n_layers, sizeof *m->act);
    if (!m->act) goto oom;
    for (int l = 0; l < c->n_layers; l++) {
        moe_tact *a = &m->act[l];
        ALLOC(a->x, (size_t)N * d); ALLOC(a->h1, (size_t)N * d); ALLOC(a->r1, N);
        ALLOC(a->qr, N * qd); ALLOC(a->kr, N * kvd); ALLOC(a->qrs, (size_t)N * H); ALLOC(a->krs, (size_t)N * KV);
        ALLOC(a->q, N * qd); ALLOC(a->k, N * kvd); ALLOC(a->v, N * kvd);
        ALLOC(a->att, (size_t)B * H * T * T); ALLOC(a->o, N * qd);
        ALLOC(a->xm, (size_t)N * d); ALLOC(a->h2, (size_t)N * d); ALLOC(a->r2, N);
        if (moe_tconfig_is_moe_layer(c, l)) {
            if ((st = moe_tmoe_init(&a->moe, c, N, l)) != MOE_OK) goto fail;
        } else {
            ALLOC(a->g, N * ff); ALLOC(a->u, N * ff);
        }
    }
    ALLOC(m->xf, (size_t)N * d); ALLOC(m->hf, (size_t)N * d); ALLOC(m->rf, N);
    ALLOC(m->probs, N * V); ALLOC(m->losses, N);
    ALLOC(m->cs, (size_t)T * hd / 2); ALLOC(m->sn, (size_t)T * hd / 2);
    moe_rope_table(m->cs, m->sn, T, hd, c->rope_theta);
    size_t wide = qd > (size_t)d ? qd : (size_t)d;
    if (ff > wide) wide = ff;
    if (V > wide) wide = V;
    ALLOC(m->dx, (size_t)N * d); ALLOC(m->dh, (size_t)N * d);
    ALLOC(m->dq, N * qd); ALLOC(m->dk, N * kvd); ALLOC(m->dv, N * kvd);
    ALLOC(m->dtmp, 4 * N * wide);
    /* linear scratch: a transposed weight */
    m->scratch_n = V * d;
    if (ff * d > m->scratch_n) m->scratch_n = ff * d;
    if (qd * d > m->scratch_n) m->scratch_n = qd * d;
    ALLOC(m->scratch, m->scratch_n);
    ALLOC(m->tokens, N); ALLOC(m->targets, N);
    *out = m;
    return MOE_OK;
oom:
    st = moe_fail(MOE_ENOMEM, "out of memory for a batch of %d x %d tokens", B, T);
fail:
    moe_tmodel_free(m);
    return st;
}

void moe_tmodel_free(moe_tmodel *m) {
    if (!m) return;
    if (m->act)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            moe_tact *a = &m->act[l];
            moe_free(a->x); moe_free(a->h1); moe_free(a->r1); moe_free(a->qr); moe_free(a->kr); moe_free(a->qrs);
            moe_free(a->krs); moe_free(a->q); moe_free(a->k); moe_free(a->v); moe_free(a->att); moe_free(a->o);
            moe_free(a->xm); moe_free(a->h2); moe_free(a->r2); moe_free(a->g); moe_free(a->u);
            if (a->moe.N) moe_tmoe_free(&a->moe);
        }
    free(m->act);
    moe_free(m->xf); moe_free(m->hf); moe_free(m->rf); moe_free(m->probs); moe_free(m->losses);
    moe_free(m->cs); moe_free(m->sn); moe_free(m->dx); moe_free(m->dh); moe_free(m->dq); moe_free(m->dk);
    moe_free(m->dv); moe_free(m->dtmp); moe_free(m->scratch); moe_free(m->tokens); moe_free(m->targets);
    moe_tparams_free(m->p);
    free(m);
}

/* The stream after the last layer: into xf; logits into probs. */
static moe_status run_forward(moe_tmodel *m, const int32_t *tokens, int training) {
    const moe_tconfig *c = &m->cfg;
    int N = m->N, B = m->B, T = m->T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    int qd = H * hd, kvd = KV * hd, ff = c->d_ff, V = c->vocab;
    float scale = (float)(1.0 / sqrt((double)hd));
    float *tmp = m->dtmp, *tmp2 = m->dtmp + (size_t)N * (qd > d ? (qd > ff ? qd : ff) : (d > ff ? d : ff));
    memcpy(m->tokens, tokens, sizeof(int32_t) * (size_t)N);
    m->aux = 0;
    moe_embed_fwd(m->act[0].x, m->p->P.embed, tokens, N, d);
    for (int l = 0; l < c->n_layers; l++) {
        moe_tact *a = &m->act[l];
        const moe_tlayer *P = &m->p->P.layer[l];
        float *xnext = l + 1 < c->n_layers ? m->act[l + 1].x : m->xf;
        /* attention */
        moe_rmsnorm_fwd(a->h1, a->r1, a->x, P->attn_norm, N, d, c->rms_eps);
        moe_linear_fwd(a->qr, a->h1, P->wq, N, d, qd, m->scratch);
        moe_linear_fwd(a->kr, a->h1, P->wk, N, d, kvd, m->scratch);
        moe_linear_fwd(a->v, a->h1, P->wv, N, d, kvd, m->scratch);
        if (c->qk_norm) {
            moe_rmsnorm_fwd(a->q, a->qrs, a->qr, P->q_norm, N * H, hd, c->rms_eps);
            moe_rmsnorm_fwd(a->k, a->krs, a->kr, P->k_norm, N * KV, hd, c->rms_eps);
        } else {
            memcpy(a->q, a->qr, sizeof(float) * (size_t)N * qd);
            memcpy(a->k, a->kr, sizeof(float) * (size_t)N * kvd);
        }
        moe_rope_fwd(a->q, m->cs, m->sn, N, T, H, hd);
        moe_rope_fwd(a->k, m->cs, m->sn, N, T, KV, hd);
        moe_attn_fwd(a->o, a->att, a->q, a->k, a->v, B, T, H, KV, hd, scale);
        moe_linear_fwd(tmp, a->o, P->wo, N, qd, d, m->scratch);
        for (size_t i = 0; i < (size_t)N * d; i++) a->xm[i] = a->x[i] + tmp[i];
        /* feed-forward */
        moe_rmsnorm_fwd(a->h2, a->r2, a->xm, P->ffn_norm, N, d, c->rms_eps);
        if (a->moe.N) {
            MOE_TRY(moe_tmoe_fwd(&a->moe, c, P, P->bias, a->h2, tokens, training, &m->rng, tmp));
            m->aux += a->moe.aux;
        } else {
            moe_linear_fwd(a->g, a->h2, P->w1, N, d, ff, m->scratch);
            moe_linear_fwd(a->u, a->h2, P->w3, N, d, ff, m->scratch);
            moe_swiglu_act_fwd(tmp2, a->g, a->u, (size_t)N * ff);
            moe_linear_fwd(tmp, tmp2, P->w2, N, ff, d, m->scratch);
        }
        for (size_t i = 0; i < (size_t)N * d; i++) xnext[i] = a->xm[i] + tmp[i];
    }
    moe_rmsnorm_fwd(m->hf, m->rf, m->xf, m->p->P.final_norm, N, d, c->rms_eps);
    moe_linear_fwd(m->probs, m->hf, m->p->P.lm_head, N, d, V, m->scratch);
    return MOE_OK;
}

moe_status moe_tmodel_forward(moe_tmodel *m, const int32_t *tokens, const int32_t *targets, int training, double *loss) {
    for (int i = 0; i < m->N; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab || (targets && (targets[i] < 0 || targets[i] >= m->cfg.vocab)))
            return moe_fail(MOE_EINPUT, "token id %d at index %d is outside the vocabulary [0, %d)",
                            tokens[i] < 0 || tokens[i] >= m->cfg.vocab ? tokens[i] : targets[i], i, m->cfg.vocab);
    MOE_TRY(run_forward(m, tokens, training));
    if (targets) {
        memcpy(m->targets, targets, sizeof(int32_t) * (size_t)m->N);
        m->ce = moe_xent_fwd(m->probs, m->losses, m->probs, targets, m->N, m->cfg.vocab);
        if (loss) *loss = m->ce;
    }
    return MOE_OK;
}

moe_status moe_tmodel_logits(moe_tmodel *m, const int32_t *tokens, float *logits) {
    MOE_TRY(moe_tmodel_forward(m, tokens, NULL, 0, NULL));
    memcpy(logits, m->probs, sizeof(float) * (size_t)m->N * m->cfg.vocab);
    return MOE_OK;
}

void moe_tmodel_backward(moe_tmodel *m) {
    const moe_tconfig *c = &m->cfg;
    int N = m->N, B = m->B, T = m->T, d = c->d_model, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    int qd = H * hd, kvd = KV * hd, ff = c->d_ff, V = c->vocab;
    float scale = (float)(1.0 / sqrt((double)hd));
    moe_tview *P = &m->p->P, *G = &m->p->G;
    size_t wide = (size_t)(qd > d ? (qd > ff ? qd : ff) : (d > ff ? d : ff));
    float *t1 = m->dtmp, *t2 = t1 + (size_t)N * wide, *t3 = t2 + (size_t)N * wide, *t4 = t3 + (size_t)N * wide;
    /* head: probs -> dlogits in place */
    moe_xent_bwd(m->probs, m->probs, m->targets, N, V, 1.0f / N);
    moe_linear_bwd(m->dh, 0, G->lm_head, m->probs, m->hf, P->lm_head, N, d, V);
    moe_rmsnorm_bwd(m->dx, 0, G->final_norm, m->dh, m->xf, P->final_norm, m->rf, N, d);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        moe_tact *a = &m->act[l];
        const moe_tlayer *Pl = &P->layer[l];
        moe_tlayer *Gl = &G->layer[l];
        /* x_next = xm + FFN(rmsnorm(xm)) */
        if (a->moe.N) {
            moe_tmoe_bwd(&a->moe, c, Pl, Gl, a->h2, m->dx, m->dh);
        } else {
            float *act = t1, *da = t2;
            moe_swiglu_act_fwd(act, a->g, a->u, (size_t)N * ff);
            moe_linear_bwd(da, 0, Gl->w2, m->dx, act, Pl->w2, N, ff, d);
            moe_swiglu_act_bwd(a->g, a->u, da, a->g, a->u, (size_t)N * ff);   /* g, u <- dg, du */
            moe_linear_bwd(m->dh, 0, Gl->w1, a->g, a->h2, Pl->w1, N, d, ff);
            moe_linear_bwd(m->dh, 1, Gl->w3, a->u, a->h2, Pl->w3, N, d, ff);
        }
        moe_rmsnorm_bwd(m->dx, 1, Gl->ffn_norm, m->dh, a->xm, Pl->ffn_norm, a->r2, N, d);
        /* xm = x + attn(rmsnorm(x)) */
        float *dout = t1;
        moe_linear_bwd(dout, 0, Gl->wo, m->dx, a->o, Pl->wo, N, qd, d);
        moe_attn_bwd(m->dq, m->dk, m->dv, dout, a->q, a->k, a->v, a->att, B, T, H, KV, hd, scale);
        moe_rope_bwd(m->dq, m->cs, m->sn, N, T, H, hd);
        moe_rope_bwd(m->dk, m->cs, m->sn, N, T, KV, hd);
        float *dqr = m->dq, *dkr = m->dk;
        if (c->qk_norm) {
            dqr = t3;
            dkr = t4;
            moe_rmsnorm_bwd(dqr, 0, Gl->q_norm, m->dq, a->qr, Pl->q_norm, a->qrs, N * H, hd);
            moe_rmsnorm_bwd(dkr, 0, Gl->k_norm, m->dk, a->kr, Pl->k_norm, a->krs, N * KV, hd);
        }
        moe_linear_bwd(m->dh, 0, Gl->wq, dqr, a->h1, Pl->wq, N, d, qd);
        moe_linear_bwd(m->dh, 1, Gl->wk, dkr, a->h1, Pl->wk, N, d, kvd);
        moe_linear_bwd(m->dh, 1, Gl->wv, m->dv, a->h1, Pl->wv, N, d, kvd);
        moe_rmsnorm_bwd(m->dx, 1, Gl->attn_norm, m->dh, a->x, Pl->attn_norm, a->r1, N, d);
    }
    moe_embed_bwd(G->embed, m->dx, m->tokens, N, d);
}
