/* trace_record.c - `moe trace`'s engine (trace_record.h): a routing hook fills one window's table of
 * (token, layer, slot) -> (expert, weight) and the per-layer score entropies; after each window the
 * rows go to the streaming trace writer. */
#include "tools/trace_record.h"
#include "core/error.h"
#include "io/json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct rec_ctx {
    int L, K, E, ctx;
    int *moe_of;          /* transformer layer -> traced index, or -1 */
    int *expert;          /* [ctx][L][K] */
    float *weight;        /* [ctx][L][K] */
    float *entropy;       /* [ctx][L] */
    moe_status err;
} rec_ctx;

static float score_entropy(const float *s, int E) {
    if (!s) return -1.0f;
    double sum = 0, h = 0;
    for (int e = 0; e < E; e++) {
        if (!(s[e] >= 0) || !isfinite(s[e])) return -1.0f;
        sum += s[e];
    }
    if (!(sum > 0)) return -1.0f;
    for (int e = 0; e < E; e++) {
        double p = s[e] / sum;
        if (p > 0) h -= p * log(p);
    }
    return (float)(h < 0 ? 0 : h);
}

static void on_route(void *user, const moe_routing *r) {
    rec_ctx *c = user;
    if (c->err || r->layer < 0 || c->moe_of[r->layer] < 0) return;
    int l = c->moe_of[r->layer];
    if (r->top_k > c->K || r->n_experts != c->E) {
        c->err = moe_fail(MOE_EINTERNAL, "trace: layer %d reported %d experts per token, more than the %d slots", r->layer,
                          r->top_k, c->K);
        return;
    }
    for (int t = 0; t < r->n_tokens; t++) {
        int p = r->pos[t];
        if (p < 0 || p >= c->ctx) { c->err = moe_fail(MOE_EINTERNAL, "trace: position %d outside the window", p); return; }
        int *ex = c->expert + ((size_t)p * c->L + l) * c->K;
        float *w = c->weight + ((size_t)p * c->L + l) * c->K;
        for (int j = 0; j < c->K; j++) {
            int e = j < r->top_k ? r->expert[(size_t)t * r->top_k + j] : -1;
            ex[j] = e >= 0 && e < c->E ? e : -1;
            w[j] = ex[j] >= 0 ? r->weight[(size_t)t * r->top_k + j] : 0.0f;
        }
        c->entropy[(size_t)p * c->L + l] = score_entropy(r->scores ? r->scores + (size_t)t * r->n_experts : NULL, r->n_experts);
    }
}

/* A token's text made safe for the trace: valid UTF-8 without NUL, at most MOE_TRACE_MAX_PIECE bytes. */
static char *piece_text(const moe_tokenizer *tok, int32_t id) {
    char *text = NULL;
    size_t len = 0;
    if (moe_tokenizer_decode(tok, &id, 1, 0, &text, &len) != MOE_OK) return NULL;
    if (moe_utf8_check((const unsigned char *)text, len) != len || memchr(text, 0, len)) {
        free(text);
        if (!(text = malloc(16))) return NULL;
        snprintf(text, 16, "<id %d>", id);
        return text;
    }
    if (len > MOE_TRACE_MAX_PIECE) {
        size_t cut = MOE_TRACE_MAX_PIECE;
        while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80) cut--;
        text[cut] = 0;
    }
    return text;
}

moe_status moe_trace_record(moe_model *m, const int32_t *ids, int n, const moe_trace_options *o, const char *path) {
    const moe_config *cfg = &m->cfg;
    rec_ctx c = {0};
    uint32_t layers[MOE_MAX_LAYERS];
    int L = 0;
    c.moe_of = malloc(sizeof(int) * (size_t)cfg->n_layers);
    if (!c.moe_of) return moe_fail(MOE_ENOMEM, "out of memory");
    for (int l = 0; l < cfg->n_layers; l++) {
        c.moe_of[l] = m->blocks[l].ffn_kind == MOE_FFN_MOE ? L : -1;
        if (c.moe_of[l] >= 0) layers[L++] = (uint32_t)l;
    }
    if (L == 0) { free(c.moe_of); return moe_fail(MOE_EUSAGE, "%s: the model has no MoE layers to trace", cfg->config_path); }
    const moe_router *R = &m->blocks[layers[0]].moe.router;
    c.L = L;
    c.E = cfg->n_experts;
    c.K = R->ops->select ? cfg->top_k : cfg->n_experts;
    c.ctx = o->ctx < n ? o->ctx : n;
    if (c.E > MOE_TRACE_MAX_EXPERTS || c.K > MOE_TRACE_MAX_SLOTS) {
        free(c.moe_of);
        return moe_fail(MOE_EUSAGE, "%s: %d experts (%d per token) are more than a trace holds", cfg->config_path, c.E, c.K);
    }
    size_t cells = (size_t)c.ctx * L * c.K;
    c.expert = malloc(cells * sizeof(int));
    c.weight = malloc(cells * sizeof(float));
    c.entropy = malloc((size_t)c.ctx * L * sizeof(float));
    moe_session *s = NULL;
    moe_trace_writer w = {0};
    int writer_open = 0;
    moe_status st = MOE_OK;
    if (!c.expert || !c.weight || !c.entropy) st = moe_fail(MOE_ENOMEM, "out of memory for a window of %d tokens", c.ctx);
    if (!st) st = moe_session_new(m, c.ctx, &s);
    if (!st) st = moe_trace_writer_open(&w, path, o->model_name ? o->model_name : "", (uint32_t)cfg->n_layers, layers,
                                        (uint32_t)L, (uint32_t)c.E, (uint32_t)c.K, (uint32_t)cfg->vocab);
    if (!st) writer_open = 1;
    if (!st) moe_session_set_route_hook(s, on_route, &c);
    for (int b = 0; !st && b < n; b += c.ctx) {
        int cn = n - b < c.ctx ? n - b : c.ctx;
        for (size_t i = 0; i < cells; i++) c.expert[i] = -1;
        moe_session_reset(s);
        st = moe_session_eval(s, ids + b, cn, NULL, 0);
        if (!st && c.err) st = c.err;
        for (int t = 0; !st && t < cn; t++)
            st = moe_trace_writer_add(&w, ids[b + t], t, c.entropy + (size_t)t * L, c.weight + (size_t)t * L * c.K,
                                      c.expert + (size_t)t * L * c.K);
        if (!st && o->progress) o->progress(o->user, b + cn, n);
    }
    /* the texts of the distinct token ids, ascending */
    int32_t *uniq = NULL;
    char **texts = NULL;
    uint32_t n_uniq = 0;
    if (!st && o->tok) {
        unsigned char *seen = calloc((size_t)cfg->vocab, 1);
        uniq = malloc(sizeof *uniq * (size_t)(n < cfg->vocab ? n : cfg->vocab) + sizeof *uniq);
        if (!seen || !uniq) st = moe_fail(MOE_ENOMEM, "out of memory");
        for (int i = 0; !st && i < n; i++) seen[ids[i]] = 1;
        for (int v = 0; !st && v < cfg->vocab; v++)
            if (seen[v]) uniq[n_uniq++] = v;
        free(seen);
        if (!st && !(texts = calloc((size_t)n_uniq + 1, sizeof *texts))) st = moe_fail(MOE_ENOMEM, "out of memory");
        uint32_t kept = 0;
        for (uint32_t i = 0; !st && i < n_uniq; i++) {
            char *tx = piece_text(o->tok, uniq[i]);
            if (!tx) continue; /* ids the tokenizer does not know: shown as numbers */
            uniq[kept] = uniq[i];
            texts[kept++] = tx;
        }
        n_uniq = kept;
    }
    if (writer_open) {
        if (!st) st = moe_trace_writer_finish(&w, n_uniq, uniq, (const char *const *)texts);
        else moe_trace_writer_abort(&w);
    }
    for (uint32_t i = 0; texts && i < n_uniq; i++) free(texts[i]);
    free(texts);
    free(uniq);
    moe_session_free(s);
    free(c.moe_of); free(c.expert); free(c.weight); free(c.entropy);
    return st;
}
