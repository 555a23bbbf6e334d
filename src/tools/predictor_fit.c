/* predictor_fit.c - ridge-regression fit of the cross-layer expert predictor (predictor_fit.h).
 * The forward pass is the ordinary session's; a hidden-state hook collects, per chunk, each guess's
 * input from the previous MoE layer and, when layer N's FFN input arrives, N's router logits, and
 * accumulates the normal equations (fit passes) or counts the experts found (validation pass). */
#include "tools/predictor_fit.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "io/st_writer.h"
#include "moe/predictor.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FIT = 0, VALIDATE = 1 };
enum { MAX_CAND = 8 };

/* Candidates per guess: one map per ridge strength, then the router's own gate (index n_ridge). With
 * a fixed ridge the first is the answer and the router is only measured; with the automatic choice
 * the first half of the held-out tokens picks a candidate per guess and the second half reports it. */
typedef struct {
    int layer, prev;          /* predicted layer N and the MoE layer before it */
    double *A[2], *B[2];      /* per guess: (d+1)^2 Gram matrix and (d+1) x E cross terms (fit pass only) */
    float *w[MAX_CAND][2], *b[MAX_CAND][2]; /* fitted candidates: [E][d] and [E] */
    uint64_t one[MAX_CAND][2][2];           /* [candidate][guess][half]: experts found by that guess alone */
    uint64_t both[MAX_CAND][MAX_CAND][2];   /* [early cand][late cand][half]: found by either guess */
    uint64_t total[2];                      /* [half]: experts chosen */
    int pick[2];                            /* chosen candidate per guess */
} fit_layer;

typedef struct {
    moe_model *m;
    int d, E, k, mode, g0, g1; /* layers [g0, g1) of `layers` are fitted in this pass */
    fit_layer *layers;
    int n_fit;
    int *fit_of;              /* transformer layer -> index in layers, or -1 */
    int *next_of;             /* MoE layer -> next MoE layer, or -1 */
    float **feat;             /* [2 * n_layers]: guess inputs [cap][d] from layer l */
    int cap;                  /* rows allocated in each scratch buffer */
    float *z, *lg, *t1, *t2, *tmp, *scores, *weight, *w0;   /* w0: the router gate being fitted towards, [E][d] */
    int *actual, *guess, *either;
    int n_ridge;              /* fitted candidates; candidate n_ridge is the router */
    const double *ridges;
    int auto_pick;            /* choose among candidates on the first half of the held-out tokens */
    int val_base, val_half;   /* validation: tokens before the current window; first token of the second half */
    moe_status err;
} fit_ctx;

static int active(const fit_ctx *c, int i) {
    return i >= 0 && (c->mode == VALIDATE || (i >= c->g0 && i < c->g1));
}

static moe_status grow(fit_ctx *c, int n) {
    if (n <= c->cap) return MOE_OK;
    int d1 = c->d + 1, E = c->E, L = c->m->cfg.n_layers;
    size_t big = (size_t)d1 > (size_t)E ? (size_t)d1 : (size_t)E;
    for (int i = 0; i < 2 * L; i++) {
        if (!c->feat[i] && c->next_of[i / 2] < 0) continue;
        moe_free(c->feat[i]);
        if (!(c->feat[i] = moe_alloc((size_t)n * c->d * 4))) return moe_fail(MOE_ENOMEM, "out of memory");
    }
    float **f[] = {&c->z, &c->lg, &c->t1, &c->t2, &c->scores, &c->weight};
    size_t sz[] = {(size_t)n * E, (size_t)n * E, (size_t)n * big, (size_t)n * big, (size_t)n * E, (size_t)n * c->k};
    for (int i = 0; i < 6; i++) {
        moe_free(*f[i]);
        if (!(*f[i] = moe_alloc(sz[i] * 4))) return moe_fail(MOE_ENOMEM, "out of memory");
    }
    moe_free(c->actual); moe_free(c->guess); moe_free(c->either);
    c->actual = moe_alloc((size_t)n * c->k * sizeof(int));
    c->guess = moe_alloc((size_t)n * c->k * 2 * MAX_CAND * sizeof(int));
    c->either = moe_alloc((size_t)c->k * 2 * sizeof(int));
    if (!c->actual || !c->guess || !c->either) return moe_fail(MOE_ENOMEM, "out of memory");
    c->cap = n;
    return MOE_OK;
}

/* out[cols][rows] = in[rows][cols]^T */
static void transpose(const float *in, int rows, int cols, float *out) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) out[(size_t)j * rows + r] = in[(size_t)r * cols + j];
}

/* Accumulate guess g's normal equations of layer f from n rows of features F [n][d] (with a constant
 * 1 appended for the bias) and targets Z. */
static void accumulate(fit_ctx *c, fit_layer *f, int g, const float *F, int n) {
    int d = c->d, d1 = d + 1, E = c->E;
    transpose(F, n, d, c->t1);                               /* [F 1]^T [d1][n] */
    for (int t = 0; t < n; t++) c->t1[(size_t)d * n + t] = 1.0f;
    transpose(c->z, n, E, c->t2);                            /* Z^T [E][n] */
    moe_matmul(c->tmp, c->t1, d1, MOE_F32, c->t1, d1, n);     /* F^T F */
    for (size_t i = 0; i < (size_t)d1 * d1; i++) f->A[g][i] += c->tmp[i];
    moe_matmul(c->tmp, c->t1, d1, MOE_F32, c->t2, E, n);      /* F^T Z */
    for (size_t i = 0; i < (size_t)d1 * E; i++) f->B[g][i] += c->tmp[i];
}

static uint64_t overlap(const int *a, const int *b, int nb, int k) {
    uint64_t h = 0;
    for (int i = 0; i < k; i++) {
        int in = 0;
        for (int j = 0; j < nb && !in; j++) in = a[i] == b[j];
        h += (uint64_t)in;
    }
    return h;
}

/* Count, per token and half of the held-out tokens, how many of the experts the router chose each
 * candidate guess, and each pair of early and late candidates together, contain. */
static void validate(fit_ctx *c, fit_layer *f, const moe_router *r, int n, const int *pos) {
    int E = c->E, k = c->k, d = c->d, K = c->n_ridge + 1;
    r->ops->select(r, c->z, n, c->scores, c->actual, c->weight);
    for (int g = 0; g < 2; g++) {
        const float *F = c->feat[2 * f->prev + g];
        for (int q = 0; q < K; q++) {
            if (q < c->n_ridge && !f->w[q][g]) continue;   /* dropped candidate: its counts are never used */
            if (q == c->n_ridge)   /* the router's own gate, as the disk store predicts without a predictor */
                moe_router_logits(r, F, n, E, c->lg);
            else
                moe_predictor_logits(F, n, d, f->w[q][g], f->b[q][g], E, c->lg);
            r->ops->select(r, c->lg, n, c->scores, c->guess + ((size_t)q * 2 + g) * n * k, c->weight);
        }
    }
    for (int t = 0; t < n; t++) {
        int half = c->val_base + pos[t] >= c->val_half;
        const int *a = c->actual + (size_t)t * k;
        for (int q = 0; q < K; q++)
            for (int g = 0; g < 2; g++) f->one[q][g][half] += overlap(a, c->guess + ((size_t)q * 2 + g) * n * k + (size_t)t * k, k, k);
        for (int qe = 0; qe < K; qe++)
            for (int ql = 0; ql < K; ql++) {
                memcpy(c->either, c->guess + ((size_t)qe * 2 + 0) * n * k + (size_t)t * k, (size_t)k * sizeof(int));
                memcpy(c->either + k, c->guess + ((size_t)ql * 2 + 1) * n * k + (size_t)t * k, (size_t)k * sizeof(int));
                f->both[qe][ql][half] += overlap(a, c->either, 2 * k, k);
            }
        f->total[half] += (uint64_t)k;
    }
}

static void on_hidden(void *user, const moe_hidden *h) {
    fit_ctx *c = user;
    const moe_model *m = c->m;
    int l = h->layer, n = h->n_tokens, d = c->d;
    if (c->err || m->blocks[l].ffn_kind != MOE_FFN_MOE) return;
    if ((c->err = grow(c, n)) != MOE_OK) return;
    int nx = c->next_of[l];
    if (h->point == MOE_HIDDEN_FFN_INPUT) {
        int i = c->fit_of[l];
        if (active(c, i)) {
            fit_layer *f = &c->layers[i];
            const moe_router *r = &m->blocks[l].moe.router;
            moe_router_logits(r, h->x, n, c->E, c->z);
            if (c->mode == FIT)
                for (int g = 0; g < 2; g++) accumulate(c, f, g, c->feat[2 * f->prev + g], n);
            else
                validate(c, f, r, n, h->pos);
        }
    }
    if (nx < 0 || !active(c, c->fit_of[nx])) return;
    moe_guess g = h->point == MOE_HIDDEN_FFN_INPUT ? MOE_GUESS_EARLY : MOE_GUESS_LATE;
    moe_predictor_input(g, h->x, n, d, m->blocks[l].ffn_norm, m->blocks[nx].ffn_norm, (float)m->cfg.rms_eps,
                        c->feat[2 * l + g]);
}

/* X = (A + lambda I)^-1 (B + lambda [W0 | 0]^T), X [d1][E], W0 the gate [E][d1 - 1], by Cholesky in
 * L [d1][d1] (scratch). */
static moe_status solve(const double *A, const double *B, const float *w0, int d1, int E, double ridge, const char *dir,
                        int layer, double *L, double *X) {
    double tr = 0;
    for (int i = 0; i < d1; i++) tr += A[(size_t)i * d1 + i];
    double lambda = ridge * (tr > 0 ? tr / d1 : 1.0);
    if (!(lambda > 0)) lambda = 1e-12;
    memcpy(L, A, sizeof(double) * (size_t)d1 * d1);
    for (int i = 0; i < d1; i++) {
        L[(size_t)i * d1 + i] += lambda;
        for (int e = 0; e < E; e++)
            X[(size_t)i * E + e] = B[(size_t)i * E + e] + (i < d1 - 1 ? lambda * w0[(size_t)e * (d1 - 1) + i] : 0.0);
    }
    for (int j = 0; j < d1; j++) {
        double *Lj = L + (size_t)j * d1, s = Lj[j];
        for (int p = 0; p < j; p++) s -= Lj[p] * Lj[p];
        if (!(s > 0) || !isfinite(s))
            return moe_fail(MOE_EINPUT, "%s: layer %d: the calibration hidden states give a singular system at ridge %g "
                            "(too few or too repetitive tokens; raise --ridge)", dir, layer, ridge);
        double djj = sqrt(s);
        Lj[j] = djj;
        #pragma omp parallel for schedule(dynamic, 16)
        for (int i = j + 1; i < d1; i++) {
            double *Li = L + (size_t)i * d1, v = Li[j];
            for (int p = 0; p < j; p++) v -= Li[p] * Lj[p];
            Li[j] = v / djj;
        }
    }
    for (int i = 0; i < d1; i++) {          /* L y = B */
        double *yi = X + (size_t)i * E;
        const double *Li = L + (size_t)i * d1;
        for (int p = 0; p < i; p++)
            for (int e = 0; e < E; e++) yi[e] -= Li[p] * X[(size_t)p * E + e];
        for (int e = 0; e < E; e++) yi[e] /= Li[i];
    }
    for (int i = d1 - 1; i >= 0; i--) {     /* L^T x = y */
        double *xi = X + (size_t)i * E;
        for (int p = i + 1; p < d1; p++) {
            double lpi = L[(size_t)p * d1 + i];
            for (int e = 0; e < E; e++) xi[e] -= lpi * X[(size_t)p * E + e];
        }
        for (int e = 0; e < E; e++) xi[e] /= L[(size_t)i * d1 + i];
    }
    return MOE_OK;
}

/* Solve every candidate of layer f from its normal equations, then free them. The Gram matrices are
 * sums of float products, so the smallest strengths can meet a matrix that rounding made indefinite
 * (repetitive calibration text): with the automatic choice such a candidate is dropped (w stays NULL). */
static moe_status solve_layer(fit_ctx *c, fit_layer *f) {
    int d = c->d, d1 = d + 1, E = c->E;
    double *L = moe_alloc(sizeof(double) * (size_t)d1 * d1), *X = moe_alloc(sizeof(double) * (size_t)d1 * E);
    moe_status st = L && X ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory for solving layer %d", f->layer);
    const moe_tensor *gate = &c->m->blocks[f->layer].moe.router.gate;
    if (st == MOE_OK) moe_to_f32(gate->dtype, gate->data, c->w0, (size_t)E * d);
    for (int g = 0; st == MOE_OK && g < 2; g++) {
        for (int q = 0; st == MOE_OK && q < c->n_ridge; q++) {
            st = solve(f->A[g], f->B[g], c->w0, d1, E, c->ridges[q], c->m->weights->dir, f->layer, L, X);
            if (st == MOE_EINPUT && c->auto_pick) { st = MOE_OK; continue; }
            f->w[q][g] = moe_alloc((size_t)E * d * 4);
            f->b[q][g] = moe_alloc((size_t)E * 4);
            if (!f->w[q][g] || !f->b[q][g]) { st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
            for (int e = 0; st == MOE_OK && e < E; e++) {
                for (int j = 0; j < d; j++) f->w[q][g][(size_t)e * d + j] = (float)X[(size_t)j * E + e];
                f->b[q][g][e] = (float)X[(size_t)d * E + e];
            }
        }
        moe_free(f->A[g]); moe_free(f->B[g]);
        f->A[g] = NULL; f->B[g] = NULL;
    }
    moe_free(L); moe_free(X);
    return st;
}

/* One pass of the forward over tokens in windows of ctx. */
static moe_status run_pass(fit_ctx *c, moe_session *s, const int32_t *tok, int n, int ctx, const moe_predictor_fit_options *o,
                           int pass, int passes) {
    for (int w = 0; w < n; w += ctx) {
        int len = n - w < ctx ? n - w : ctx;
        c->val_base = w;
        moe_session_reset(s);
        MOE_TRY(moe_session_eval(s, tok + w, len, NULL, 0));
        if (c->err) return c->err;
        if (o->progress) o->progress(o->progress_user, pass, passes, w + len, n);
    }
    return MOE_OK;
}

/* Pick each guess's candidate on the first half of the held-out tokens (automatic ridge), and make
 * the router's gate a tensor where it won. */
static moe_status pick(fit_ctx *c, fit_layer *f) {
    for (int g = 0; g < 2; g++) {
        f->pick[g] = c->auto_pick ? c->n_ridge : 0;   /* a fit must beat the router to replace it */
        for (int q = 0; c->auto_pick && q < c->n_ridge; q++)
            if (f->w[q][g] && f->one[q][g][0] > f->one[f->pick[g]][g][0]) f->pick[g] = q;
        int q = f->pick[g];
        if (q < c->n_ridge) continue;
        const moe_tensor *gate = &c->m->blocks[f->layer].moe.router.gate;
        f->w[q][g] = moe_alloc((size_t)c->E * c->d * 4);
        f->b[q][g] = moe_calloc((size_t)c->E, 4);
        if (!f->w[q][g] || !f->b[q][g]) return moe_fail(MOE_ENOMEM, "out of memory");
        moe_to_f32(gate->dtype, gate->data, f->w[q][g], (size_t)c->E * c->d);
    }
    return MOE_OK;
}

static moe_status tensor_data(void *user, int i, const void **out) {
    fit_ctx *c = user;
    fit_layer *f = &c->layers[i / 4];
    int g = (i / 2) % 2, q = f->pick[g];
    *out = i % 2 ? (const void *)f->b[q][g] : (const void *)f->w[q][g];
    return MOE_OK;
}

static moe_status write_file(fit_ctx *c, const char *path, const char *meta) {
    moe_st_entry *e = calloc((size_t)c->n_fit * 4, sizeof *e);
    char (*names)[64] = calloc((size_t)c->n_fit * 4, sizeof *names);
    if (!e || !names) { free(e); free(names); return moe_fail(MOE_ENOMEM, "out of memory"); }
    static const char *const guess[2] = {"early", "late"};
    for (int i = 0; i < c->n_fit * 4; i++) {
        int g = (i / 2) % 2, bias = i % 2;
        snprintf(names[i], sizeof names[i], "layers.%d.%s.%s", c->layers[i / 4].layer, guess[g], bias ? "bias" : "weight");
        e[i].name = names[i];
        e[i].dtype = "F32";
        e[i].ndim = bias ? 1 : 2;
        e[i].shape[0] = c->E;
        e[i].shape[1] = c->d;
        e[i].nbytes = (uint64_t)c->E * (bias ? 1 : (uint64_t)c->d) * 4;
    }
    const char *mk[1] = {MOE_PREDICTOR_META_KEY}, *mv[1] = {meta};
    moe_status st = moe_st_write(path, e, c->n_fit * 4, mk, mv, 1, tensor_data, c);
    free(e);
    free(names);
    return st;
}

static void free_ctx(fit_ctx *c) {
    int L = c->m->cfg.n_layers;
    for (int i = 0; c->layers && i < c->n_fit; i++)
        for (int g = 0; g < 2; g++) {
            moe_free(c->layers[i].A[g]); moe_free(c->layers[i].B[g]);
            for (int q = 0; q < MAX_CAND; q++) { moe_free(c->layers[i].w[q][g]); moe_free(c->layers[i].b[q][g]); }
        }
    for (int i = 0; c->feat && i < 2 * L; i++) moe_free(c->feat[i]);
    free(c->feat); free(c->layers); free(c->fit_of); free(c->next_of);
    moe_free(c->z); moe_free(c->lg); moe_free(c->t1); moe_free(c->t2); moe_free(c->tmp);
    moe_free(c->scores); moe_free(c->weight); moe_free(c->w0); moe_free(c->actual); moe_free(c->guess); moe_free(c->either);
}

static double share(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

static const double k_auto_ridges[] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};

moe_status moe_predictor_fit(moe_model *m, const int32_t *tokens, int n, const moe_predictor_fit_options *o,
                             const char *out_path, moe_predictor_fit_report *rep) {
    memset(rep, 0, sizeof *rep);
    const moe_config *cfg = &m->cfg;
    int L = cfg->n_layers, d = cfg->hidden, d1 = d + 1, E = cfg->n_experts, k = cfg->top_k;
    if (o->ctx < 1) return moe_fail(MOE_EUSAGE, "the window length must be at least 1 token");
    if (!(o->ridge >= 0) || !isfinite(o->ridge)) return moe_fail(MOE_EUSAGE, "the ridge strength must be positive (or 0: automatic)");
    if (!(o->val_fraction >= 0 && o->val_fraction < 1)) return moe_fail(MOE_EUSAGE, "the held-out share must be in [0, 1)");
    int n_val = (int)(n * o->val_fraction), n_fit = n - n_val;
    if (o->ridge == 0 && n_val < 2)
        return moe_fail(MOE_EUSAGE, "choosing the ridge automatically needs held-out tokens (%d held out of %d); give a "
                        "larger held-out share or a fixed ridge", n_val, n);
    if (n_fit < 1) return moe_fail(MOE_EINPUT, "no calibration tokens left to fit on");
    fit_ctx c = {.m = m, .d = d, .E = E, .k = k};
    c.auto_pick = o->ridge == 0;
    c.ridges = c.auto_pick ? k_auto_ridges : &o->ridge;
    c.n_ridge = c.auto_pick ? (int)(sizeof k_auto_ridges / sizeof *k_auto_ridges) : 1;
    c.val_half = c.auto_pick ? n_val / 2 : 0;   /* fixed ridge: nothing to choose, report on all held-out tokens */
    c.fit_of = malloc(sizeof(int) * (size_t)L);
    c.next_of = malloc(sizeof(int) * (size_t)L);
    c.layers = calloc((size_t)L, sizeof *c.layers);
    c.feat = calloc(2 * (size_t)L, sizeof *c.feat);
    c.tmp = moe_alloc((size_t)d1 * (d1 > E ? d1 : E) * 4 + 4);
    c.w0 = moe_alloc((size_t)E * d * 4);
    moe_status st = c.fit_of && c.next_of && c.layers && c.feat && c.tmp && c.w0 ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
    int prev = -1;
    for (int l = 0; st == MOE_OK && l < L; l++) {
        c.fit_of[l] = c.next_of[l] = -1;
        if (m->blocks[l].ffn_kind != MOE_FFN_MOE) continue;
        const moe_router *r = &m->blocks[l].moe.router;
        if (!r->ops->select || moe_router_n_logits(r) != E)
            st = moe_fail(MOE_EUSAGE, "%s: layer %d's router (%s) does not choose a fixed top-k from one logit per "
                          "expert, so there is nothing for a cross-layer predictor to predict", m->weights->dir, l, r->ops->name);
        if (prev >= 0 && st == MOE_OK) {
            c.next_of[prev] = l;
            c.fit_of[l] = c.n_fit;
            c.layers[c.n_fit++] = (fit_layer){.layer = l, .prev = prev};
        }
        prev = l;
    }
    if (st == MOE_OK && c.n_fit == 0)
        st = moe_fail(MOE_EUSAGE, "%s: a cross-layer predictor needs at least two MoE layers", m->weights->dir);
    moe_session *s = NULL;
    if (st == MOE_OK) st = moe_session_new(m, o->ctx, &s);
    if (st == MOE_OK) {
        moe_session_set_hidden_hook(s, on_hidden, &c);
        double per = 2.0 * ((double)d1 * d1 + (double)d1 * E) * 8;
        int per_pass = (int)(o->max_memory / per);
        if (per_pass < 1) per_pass = 1;
        int passes = (c.n_fit + per_pass - 1) / per_pass;
        rep->passes = passes;
        for (int p = 0; st == MOE_OK && p < passes; p++) {
            c.mode = FIT;
            c.g0 = p * per_pass;
            c.g1 = c.g0 + per_pass < c.n_fit ? c.g0 + per_pass : c.n_fit;
            for (int i = c.g0; st == MOE_OK && i < c.g1; i++)
                for (int g = 0; g < 2; g++) {
                    fit_layer *f = &c.layers[i];
                    f->A[g] = moe_calloc((size_t)d1 * d1, sizeof(double));
                    f->B[g] = moe_calloc((size_t)d1 * E, sizeof(double));
                    if (!f->A[g] || !f->B[g])
                        st = moe_fail(MOE_ENOMEM, "out of memory for the normal equations of layer %d (lower --fit-memory)",
                                      f->layer);
                }
            if (st == MOE_OK) st = run_pass(&c, s, tokens, n_fit, o->ctx, o, p + 1, passes + (n_val > 0));
            for (int i = c.g0; st == MOE_OK && i < c.g1; i++) st = solve_layer(&c, &c.layers[i]);
        }
    }
    if (st == MOE_OK && n_val > 0) {
        c.mode = VALIDATE;
        st = run_pass(&c, s, tokens + n_fit, n_val, o->ctx, o, rep->passes + 1, rep->passes + 1);
    }
    for (int i = 0; st == MOE_OK && i < c.n_fit; i++) st = pick(&c, &c.layers[i]);
    if (st == MOE_OK) {
        rep->fit_tokens = n_fit;
        rep->val_tokens = n_val - c.val_half;
        rep->n_layers = c.n_fit;
        rep->layers = calloc((size_t)c.n_fit, sizeof *rep->layers);
        if (!rep->layers) st = moe_fail(MOE_ENOMEM, "out of memory");
        uint64_t tot[2][3] = {{0}}, all = 0;
        int R = c.n_ridge;
        for (int i = 0; st == MOE_OK && i < c.n_fit; i++) {
            fit_layer *f = &c.layers[i];
            moe_predictor_fit_layer *y = &rep->layers[i];
            uint64_t cnt[2][3] = {{f->one[R][0][1], f->one[R][1][1], f->both[R][R][1]},
                                  {f->one[f->pick[0]][0][1], f->one[f->pick[1]][1][1], f->both[f->pick[0]][f->pick[1]][1]}};
            y->layer = f->layer;
            for (int g = 0; g < 2; g++) y->ridge[g] = f->pick[g] < R ? c.ridges[f->pick[g]] : 0.0;
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 3; b++) {
                    y->found[a][b] = share(cnt[a][b], f->total[1]);
                    tot[a][b] += cnt[a][b];
                }
            all += f->total[1];
        }
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 3; b++) rep->found[a][b] = share(tot[a][b], all);
    }
    if (st == MOE_OK) {
        char meta[512];
        snprintf(meta, sizeof meta, "{\"version\": 1, \"fit_tokens\": %d, \"ctx\": %d, \"ridge\": \"%s\", \"report_tokens\": %d, "
                 "\"found_router\": %.6f, \"found_fitted\": %.6f}", n_fit, o->ctx, c.auto_pick ? "auto" : "fixed",
                 rep->val_tokens, rep->found[0][2], rep->found[1][2]);
        st = write_file(&c, out_path, meta);
    }
    if (st != MOE_OK) { free(rep->layers); rep->layers = NULL; }
    moe_session_free(s);
    free_ctx(&c);
    return st;
}
