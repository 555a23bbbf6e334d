/* prune.c - choosing the experts to keep and writing the pruned folder (prune.h). */
#include "tools/prune.h"
#include "core/error.h"
#include "tools/expert_rewrite.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_names[] = {"freq", "reap", "task"};

/* Groups that constrain DeepSeek's choice (and so must stay equal in size). */
static int groups_used(const moe_config *c) { return c->group_limited && c->n_group > 1; }

moe_status moe_prune_check(moe_model *m, int keep) {
    const moe_config *c = &m->cfg;
    const char *dir = m->weights->dir;
    int E = c->n_experts, first = -1;
    for (int l = 0; l < c->n_layers && first < 0; l++)
        if (c->ffn_kind[l] == MOE_FFN_MOE) first = l;
    if (first < 0) return moe_fail(MOE_EUSAGE, "%s: the model has no MoE layers", dir);
    MOE_TRY(moe_expert_rewrite_check(m));
    if (moe_router_n_logits(&m->blocks[first].moe.router) != E)
        return moe_fail(MOE_EUSAGE, "%s: router %s does not score each expert with one gate row; it cannot lose experts", dir, c->router);
    if (keep < 1 || keep > E) return moe_fail(MOE_EUSAGE, "%s: cannot keep %d of %d experts", dir, keep, E);
    if (keep < c->top_k)
        return moe_fail(MOE_EUSAGE, "%s: keeping %d experts is fewer than the %d each token uses (num_experts_per_tok); keep at least %d",
                        dir, keep, c->top_k, c->top_k);
    if (groups_used(c)) {
        int G = c->n_group, per = keep / G;
        if (keep % G)
            return moe_fail(MOE_EUSAGE, "%s: the router chooses among %d expert groups (n_group), which must stay equal: keep a "
                            "multiple of %d (e.g. %d)", dir, G, G, (keep / G > 0 ? keep / G : 1) * G);
        if (c->has_score_bias && per < 2)
            return moe_fail(MOE_EUSAGE, "%s: each of the %d groups needs at least 2 experts (its score is the sum of its best two); "
                            "keep at least %d", dir, G, 2 * G);
        if (c->top_k > c->topk_group * per)
            return moe_fail(MOE_EUSAGE, "%s: %d experts per token do not fit in the %d groups of %d a token may use (topk_group); "
                            "keep at least %d", dir, c->top_k, c->topk_group, per,
                            G * ((c->top_k + c->topk_group - 1) / c->topk_group));
    }
    return MOE_OK;
}

void moe_prune_scores(const moe_calib_layer *L, int E, moe_prune_method method, double *s) {
    for (int e = 0; e < E; e++) {
        if (method == MOE_PRUNE_FREQ) s[e] = L->freq[e];
        else if (method == MOE_PRUNE_REAP) s[e] = L->freq[e] > 0 ? L->reap[e] / L->freq[e] : 0;
        else s[e] = L->task[e];
    }
}

typedef struct rank_ctx { const double *s, *f; } rank_ctx;
static int by_importance(const void *a, const void *b, void *arg) {
    const rank_ctx *r = arg;
    int x = *(const int *)a, y = *(const int *)b;
    if (r->s[x] != r->s[y]) return r->s[x] > r->s[y] ? -1 : 1;
    if (r->f[x] != r->f[y]) return r->f[x] > r->f[y] ? -1 : 1;
    return x - y;
}
static int ascending(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

moe_status moe_prune_model(moe_model *m, const moe_calib *cal, const char *out_dir, const moe_prune_options *o) {
    const moe_config *c = &m->cfg;
    MOE_TRY(moe_prune_check(m, o->keep));
    int E = c->n_experts, K = o->keep, n = cal->n_moe;
    int G = groups_used(c) ? c->n_group : 1, per_in = E / G, per_out = K / G;
    int *src = malloc(sizeof(int) * (size_t)n * K + 4), *order = malloc(sizeof(int) * (size_t)E);
    double *score = malloc(sizeof(double) * (size_t)E);
    cJSON *rep = cJSON_CreateObject(), *layers = rep ? cJSON_AddArrayToObject(rep, "layers") : NULL;
    moe_status st = src && order && score && layers ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
    if (!st) {
        cJSON_AddStringToObject(rep, "method", k_names[o->method]);
        cJSON_AddNumberToObject(rep, "experts", E);
        cJSON_AddNumberToObject(rep, "kept", K);
        cJSON_AddNumberToObject(rep, "calibration_tokens", cal->n_tokens);
        if (o->method == MOE_PRUNE_TASK) cJSON_AddNumberToObject(rep, "threshold", o->threshold);
    }
    for (int i = 0; !st && i < n; i++) {
        const moe_calib_layer *L = &cal->layers[i];
        moe_prune_scores(L, E, o->method, score);
        int *kept = src + (size_t)i * K;
        for (int g = 0; g < G; g++) {   /* the best per_out of each group (one group unless DeepSeek's) */
            for (int e = 0; e < per_in; e++) order[e] = g * per_in + e;
            rank_ctx rc = {score, L->freq};
            qsort_r(order, (size_t)per_in, sizeof *order, by_importance, &rc);
            memcpy(kept + g * per_out, order, sizeof(int) * (size_t)per_out);
        }
        qsort(kept, (size_t)K, sizeof *kept, ascending);
        cJSON *jl = cJSON_CreateObject(), *jk = cJSON_CreateIntArray(kept, K), *js = cJSON_CreateDoubleArray(score, E);
        if (!jl || !jk || !js) { cJSON_Delete(jl); cJSON_Delete(jk); cJSON_Delete(js); st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
        cJSON_AddNumberToObject(jl, "layer", L->layer);
        cJSON_AddItemToObject(jl, "kept", jk);
        cJSON_AddItemToObject(jl, "scores", js);
        cJSON_AddItemToArray(layers, jl);
        if (o->log) {
            fprintf(o->log, "prune: layer %d keeps", L->layer);
            for (int j = 0; j < K && j < 32; j++) fprintf(o->log, " %d", kept[j]);
            fprintf(o->log, "%s\n", K > 32 ? " ..." : "");
        }
    }
    char *text = st ? NULL : cJSON_Print(rep);
    cJSON_Delete(rep);
    if (!st && !text) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (!st) {
        moe_expert_plan p = {K, K, src, src, NULL, NULL, NULL, text, o->shard_bytes, o->log};
        st = moe_expert_rewrite(m, out_dir, &p);
    }
    free(text);
    free(src); free(order); free(score);
    return st;
}
