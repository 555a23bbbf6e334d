/* expert_calib.c - per-expert calibration measures through the public hooks (expert_calib.h). */
#include "tools/expert_calib.h"
#include "core/alloc.h"
#include "core/error.h"
#include "moe/ffn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cal_ctx {
    moe_model *m;
    moe_calib *c;
    const moe_calib_options *o;
    int *idx_of;          /* transformer layer -> index in c->layers, or -1 */
    float *x;             /* the current MoE layer's input, [chunk][d] */
    int *kept;            /* [chunk]: where each of its tokens is kept in the layer's x/scores, or -1 */
    int x_layer, x_n, chunk;
    int base;             /* calibration index of the window's first token */
    int stride;           /* keep every stride-th token */
    float *rows, *y, *hg, *hu;   /* expert scratch, [cap][d or ff] */
    int *tok;
    float *gw;
    int cap;
    moe_status err;
} cal_ctx;

static moe_status grow(cal_ctx *x, int n) {
    if (n <= x->cap) return MOE_OK;
    int d = x->c->d, ff = x->m->cfg.moe_intermediate;
    moe_free(x->rows); moe_free(x->y); moe_free(x->hg); moe_free(x->hu); free(x->tok); free(x->gw);
    x->rows = moe_alloc((size_t)n * d * 4);
    x->y = moe_alloc((size_t)n * d * 4);
    x->hg = moe_alloc((size_t)n * ff * 4);
    x->hu = moe_alloc((size_t)n * ff * 4);
    x->tok = malloc(sizeof(int) * (size_t)n);
    x->gw = malloc(sizeof(float) * (size_t)n);
    x->cap = 0;
    if (!x->rows || !x->y || !x->hg || !x->hu || !x->tok || !x->gw) return moe_fail(MOE_ENOMEM, "calibration: out of memory");
    x->cap = n;
    return MOE_OK;
}

moe_status moe_expert_apply(moe_model *m, int layer, int e, const float *x, int n, float *out, float *h) {
    int ff = m->cfg.moe_intermediate;
    moe_ffn_weights w;
    MOE_TRY(moe_store_acquire(m->store, layer, e, &w));
    float *hg = h ? h : moe_alloc((size_t)n * ff * 4 + 4), *hu = moe_alloc((size_t)n * ff * 4 + 4);
    moe_status st = MOE_OK;
    if (!hg || !hu) st = moe_fail(MOE_ENOMEM, "out of memory for expert activations");
    else moe_swiglu_forward(&w, x, n, out, hg, hu);
    moe_store_release(m->store, layer, e);
    if (!h) moe_free(hg);
    moe_free(hu);
    return st;
}

static void on_hidden(void *user, const moe_hidden *h) {
    cal_ctx *x = user;
    if (h->point != MOE_HIDDEN_FFN_INPUT || x->err || x->idx_of[h->layer] < 0) return;
    if (h->n_tokens > x->chunk) { x->err = moe_fail(MOE_EINTERNAL, "calibration: %d tokens in one call", h->n_tokens); return; }
    memcpy(x->x, h->x, (size_t)h->n_tokens * h->d_model * 4);
    x->x_layer = h->layer;
    x->x_n = h->n_tokens;
    /* keep every stride-th token's input for merging */
    moe_calib_layer *L = &x->c->layers[x->idx_of[h->layer]];
    for (int t = 0; t < h->n_tokens; t++) {
        int g = x->base + h->pos[t];
        x->kept[t] = -1;
        if (x->o->keep_tokens <= 0 || g % x->stride || L->n_kept >= x->o->keep_tokens) continue;
        memcpy(L->x + (size_t)L->n_kept * h->d_model, h->x + (size_t)t * h->d_model, (size_t)h->d_model * 4);
        x->kept[t] = L->n_kept++;  /* its scores arrive with the routing hook */
    }
}

static void on_route(void *user, const moe_routing *r) {
    cal_ctx *x = user;
    if (x->err || x->idx_of[r->layer] < 0) return;
    moe_calib_layer *L = &x->c->layers[x->idx_of[r->layer]];
    int E = x->c->E, K = r->top_k, d = x->c->d;
    if (r->layer != x->x_layer || r->n_tokens != x->x_n || r->n_experts != E) {
        x->err = moe_fail(MOE_EINTERNAL, "calibration: layer %d's routing does not follow its input", r->layer);
        return;
    }
    for (int t = 0; t < r->n_tokens; t++) /* the kept tokens' scores (uniform if the router gives none) */
        for (int e = 0; x->kept[t] >= 0 && e < E; e++)
            L->scores[(size_t)x->kept[t] * E + e] = r->scores ? r->scores[(size_t)t * E + e] : 1.0f / E;
    for (int t = 0; t < r->n_tokens; t++) {
        const float *p = r->scores ? r->scores + (size_t)t * E : NULL;
        double chosen = 0;
        for (int j = 0; j < K; j++) {
            int e = r->expert[(size_t)t * K + j];
            if (e < 0) continue;
            L->freq[e] += 1;
            L->wsum[e] += r->weight[(size_t)t * K + j];
            if (p) chosen += p[e];
        }
        if (!p) continue;
        for (int e = 0; e < E; e++) L->psum[e] += p[e];
        for (int j = 0; j < K && chosen > 0; j++) {
            int e = r->expert[(size_t)t * K + j];
            if (e >= 0 && p[e] / chosen >= x->o->task_threshold) L->task[e] += p[e];
        }
    }
    if (!x->o->outputs) return;
    /* expert outputs on the tokens routed to each expert */
    for (int e = 0; e < E && !x->err; e++) {
        int cnt = 0;
        for (int t = 0; t < r->n_tokens; t++)
            for (int j = 0; j < K; j++)
                if (r->expert[(size_t)t * K + j] == e) {
                    if ((x->err = grow(x, cnt + 1 > r->n_tokens ? cnt + 1 : r->n_tokens)) != MOE_OK) return;
                    x->tok[cnt] = t;
                    x->gw[cnt] = r->weight[(size_t)t * K + j];
                    memcpy(x->rows + (size_t)cnt * d, x->x + (size_t)t * d, (size_t)d * 4);
                    cnt++;
                }
        if (!cnt) continue;
        if (x->m->cfg.expert_input_weighted)   /* Llama 4: the expert sees w x and its output counts unscaled */
            for (int i = 0; i < cnt; i++) {
                for (int c = 0; c < d; c++) x->rows[(size_t)i * d + c] *= x->gw[i];
                x->gw[i] = 1.0f;
            }
        if ((x->err = moe_expert_apply(x->m, r->layer, e, x->rows, cnt, x->y, x->hg)) != MOE_OK) return;
        for (int i = 0; i < cnt; i++) {
            const float *y = x->y + (size_t)i * d;
            double ss = 0;
            for (int c = 0; c < d; c++) {
                ss += (double)y[c] * y[c];
                float a = fabsf(y[c]);
                if (a > L->max_abs[e] || L->max_chan[e] < 0) {
                    L->max_abs[e] = a;
                    L->max_chan[e] = c;
                    L->max_token[e] = x->base + r->pos[x->tok[i]];
                }
            }
            L->reap[e] += (double)x->gw[i] * sqrt(ss);
        }
    }
}

void moe_calib_free(moe_calib *c) {
    for (int l = 0; c->layers && l < c->n_moe; l++) {
        moe_calib_layer *L = &c->layers[l];
        free(L->freq); free(L->wsum); free(L->psum); free(L->task); free(L->reap);
        free(L->max_abs); free(L->max_chan); free(L->max_token);
        moe_free(L->x); moe_free(L->scores);
    }
    free(c->layers);
    memset(c, 0, sizeof *c);
}

moe_status moe_calib_run(moe_model *m, const int32_t *ids, int n, const moe_calib_options *o, moe_calib *c) {
    const moe_config *cfg = &m->cfg;
    memset(c, 0, sizeof *c);
    cal_ctx x = {0};
    x.m = m;
    x.c = c;
    x.o = o;
    x.x_layer = -1;
    c->E = cfg->n_experts;
    c->d = cfg->hidden;
    c->n_tokens = n;
    x.idx_of = malloc(sizeof(int) * (size_t)cfg->n_layers);
    if (!x.idx_of) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int l = 0; l < cfg->n_layers; l++) x.idx_of[l] = cfg->ffn_kind[l] == MOE_FFN_MOE ? c->n_moe++ : -1;
    moe_status st = MOE_OK;
    if (!c->n_moe) st = moe_fail(MOE_EUSAGE, "%s: the model has no MoE layers", cfg->config_path);
    const moe_router *R0 = NULL;
    for (int l = 0; l < cfg->n_layers && !R0; l++)
        if (x.idx_of[l] >= 0) R0 = &m->blocks[l].moe.router;
    if (!st && o->outputs && R0 && (R0->ops->kind == MOE_ROUTE_SOFT ||
                                    (cfg->router_rank > 0 && !strcmp(cfg->router, "aoe"))))
        st = moe_fail(MOE_EUSAGE, "%s: router %s does not send tokens to experts one by one; expert outputs per token "
                      "are not defined", cfg->config_path, cfg->router);
    int ctx = o->ctx < n ? o->ctx : n;
    x.stride = o->keep_tokens > 0 && n > o->keep_tokens ? n / o->keep_tokens : 1;
    int chunk = ctx < 256 ? ctx : 256;   /* the session's chunk is at most 256 tokens (checked in on_hidden) */
    x.chunk = chunk;
    if (!st && !(c->layers = calloc((size_t)c->n_moe, sizeof *c->layers))) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (!st && !(x.x = moe_alloc((size_t)chunk * c->d * 4 + 4))) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (!st && !(x.kept = malloc(sizeof(int) * (size_t)chunk))) st = moe_fail(MOE_ENOMEM, "out of memory");
    for (int l = 0, i = 0; !st && l < cfg->n_layers; l++) {
        if (x.idx_of[l] < 0) continue;
        moe_calib_layer *L = &c->layers[i++];
        size_t E = (size_t)c->E;
        L->layer = l;
        L->freq = calloc(E, sizeof(double)); L->wsum = calloc(E, sizeof(double)); L->psum = calloc(E, sizeof(double));
        L->task = calloc(E, sizeof(double)); L->reap = calloc(E, sizeof(double));
        L->max_abs = calloc(E, sizeof(float)); L->max_chan = malloc(E * sizeof(int)); L->max_token = calloc(E, sizeof(int));
        if (!L->freq || !L->wsum || !L->psum || !L->task || !L->reap || !L->max_abs || !L->max_chan || !L->max_token)
            st = moe_fail(MOE_ENOMEM, "out of memory");
        for (size_t e = 0; !st && e < E; e++) L->max_chan[e] = -1;
        if (!st && o->keep_tokens > 0) {
            L->x = moe_alloc((size_t)o->keep_tokens * c->d * 4);
            L->scores = moe_alloc((size_t)o->keep_tokens * E * 4);
            if (!L->x || !L->scores)
                st = moe_fail(MOE_ENOMEM, "out of memory for %d calibration tokens per layer (lower --merge-tokens)", o->keep_tokens);
        }
    }
    moe_session *s = NULL;
    if (!st) st = moe_session_new(m, ctx, &s);
    if (!st) {
        moe_session_set_hidden_hook(s, on_hidden, &x);
        moe_session_set_route_hook(s, on_route, &x);
    }
    for (int b = 0; !st && b < n; b += ctx) {
        int cn = n - b < ctx ? n - b : ctx;
        x.base = b;
        moe_session_reset(s);
        st = moe_session_eval(s, ids + b, cn, NULL, 0);
        if (!st && x.err) st = x.err;
        if (!st && o->progress) o->progress(o->user, b + cn, n);
    }
    moe_session_free(s);
    free(x.idx_of);
    moe_free(x.x); free(x.kept); moe_free(x.rows); moe_free(x.y); moe_free(x.hg); moe_free(x.hu);
    free(x.tok); free(x.gw);
    if (st) moe_calib_free(c);
    return st;
}
