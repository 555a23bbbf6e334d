/* merge.c - grouping experts, aligning their neurons and averaging their weights (merge.h). */
#include "tools/merge.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include "tools/expert_rewrite.h"
#include "tools/hungarian.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct merge_layer {
    int *group;        /* [E] stored index of each expert's group */
    int *perm;         /* [E][ff] msmoe: neuron a of the merged expert is member neuron perm[a]; NULL: identity */
    int *dominant;     /* [groups] msmoe: each group's dominant expert; NULL for hcsmoe */
} merge_layer;

typedef struct merge_ctx {
    moe_model *m;
    const moe_calib *cal;
    const moe_merge_options *o;
    merge_layer *L;
    int *map;          /* [n_moe][E] compact layout: group of each slot */
    int *rows;         /* [n_moe][E] identity */
    double *acc_g, *acc_u, *acc_d;
    float *wg, *wu, *wd;
} merge_ctx;

moe_status moe_merge_check(moe_model *m, int groups) {
    const moe_config *c = &m->cfg;
    int any = 0;
    for (int l = 0; l < c->n_layers; l++) any |= c->ffn_kind[l] == MOE_FFN_MOE;
    if (!any) return moe_fail(MOE_EUSAGE, "%s: the model has no MoE layers", m->weights->dir);
    MOE_TRY(moe_expert_rewrite_check(m));
    if (c->router_rank > 0 && !strcmp(c->router, "aoe"))
        return moe_fail(MOE_EUSAGE, "%s: Autonomy-of-Experts experts take their gate input from the router; they cannot be merged",
                        m->weights->dir);
    if (groups < 1 || groups > c->n_experts)
        return moe_fail(MOE_EUSAGE, "%s: cannot merge %d experts into %d groups", m->weights->dir, c->n_experts, groups);
    return MOE_OK;
}

static int by_freq_desc(const void *a, const void *b, void *arg) {
    const double *f = arg;
    int x = *(const int *)a, y = *(const int *)b;
    if (f[x] != f[y]) return f[x] > f[y] ? -1 : 1;
    return x - y;
}

/* Number groups by their smallest member, so that the stored order follows the experts' order. */
static void renumber(int *group, int E, int n_groups, int *dominant) {
    int *first = malloc(sizeof(int) * (size_t)n_groups), *newid = malloc(sizeof(int) * (size_t)n_groups);
    int *dom = dominant ? malloc(sizeof(int) * (size_t)n_groups) : NULL;
    if (!first || !newid || (dominant && !dom)) { free(first); free(newid); free(dom); return; }
    for (int g = 0; g < n_groups; g++) first[g] = -1;
    int next = 0;
    for (int e = 0; e < E; e++)
        if (first[group[e]] < 0) { first[group[e]] = e; newid[group[e]] = next++; }
    for (int e = 0; e < E; e++) group[e] = newid[group[e]];
    if (dominant) {
        for (int g = 0; g < n_groups; g++) dom[newid[g]] = dominant[g];
        memcpy(dominant, dom, sizeof(int) * (size_t)n_groups);
    }
    free(first); free(newid); free(dom);
}

/* Expert activations h[T][ff] (silu(gate x) * (up x)) on the sampled tokens, and optionally outputs y[T][d]. */
static moe_status activations(merge_ctx *c, int layer, int e, const float *x, int T, float *h, float *y) {
    int d = c->cal->d;
    float *tmp = y ? y : moe_alloc((size_t)T * d * 4);
    if (!tmp) return moe_fail(MOE_ENOMEM, "merge: out of memory");
    moe_status st = moe_expert_apply(c->m, layer, e, x, T, tmp, h);
    if (!y) moe_free(tmp);
    return st;
}

/* Columns of h[T][ff] centred and scaled to unit norm, transposed to ht[ff][T] (constant columns: 0). */
static void standardise(const float *h, int T, int ff, float *ht) {
    for (int a = 0; a < ff; a++) {
        double mean = 0, ss = 0;
        for (int t = 0; t < T; t++) mean += h[(size_t)t * ff + a];
        mean /= T;
        for (int t = 0; t < T; t++) {
            double v = h[(size_t)t * ff + a] - mean;
            ss += v * v;
        }
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;
        for (int t = 0; t < T; t++) ht[(size_t)a * T + t] = (float)((h[(size_t)t * ff + a] - mean) * inv);
    }
}

static moe_status group_msmoe(merge_ctx *c, int i, merge_layer *ML) {
    const moe_calib_layer *CL = &c->cal->layers[i];
    int E = c->cal->E, N = c->o->groups, T = CL->n_kept, ff = c->m->cfg.moe_intermediate;
    if (T < 2) return moe_fail(MOE_EUSAGE, "merge: layer %d kept %d calibration tokens; at least 2 are needed", CL->layer, T);
    int *order = malloc(sizeof(int) * (size_t)E);
    double *norm = calloc((size_t)E, sizeof(double));
    float *hd = moe_alloc((size_t)T * ff * 4), *hm = moe_alloc((size_t)T * ff * 4);
    float *td = moe_alloc((size_t)T * ff * 4), *tm = moe_alloc((size_t)T * ff * 4), *corr = moe_alloc((size_t)ff * ff * 4);
    double *cost = malloc(sizeof(double) * (size_t)ff * ff);
    moe_status st = order && norm && hd && hm && td && tm && corr && cost ? MOE_OK : moe_fail(MOE_ENOMEM, "merge: out of memory");
    ML->dominant = st ? NULL : malloc(sizeof(int) * (size_t)N);
    ML->perm = st ? NULL : malloc(sizeof(int) * (size_t)E * ff);
    if (!st && (!ML->dominant || !ML->perm)) st = moe_fail(MOE_ENOMEM, "merge: out of memory");
    if (!st) {
        /* dominant experts: the most frequently selected */
        for (int e = 0; e < E; e++) order[e] = e;
        qsort_r(order, (size_t)E, sizeof *order, by_freq_desc, CL->freq);
        for (int e = 0; e < E; e++) ML->group[e] = -1;
        for (int g = 0; g < N; g++) { ML->dominant[g] = order[g]; ML->group[order[g]] = g; }
        /* the others join the dominant expert with the most similar router scores */
        const float *S = CL->scores;
        for (int e = 0; e < E; e++)
            for (int t = 0; t < T; t++) norm[e] += (double)S[(size_t)t * E + e] * S[(size_t)t * E + e];
        for (int e = 0; e < E; e++) {
            if (ML->group[e] >= 0) continue;
            int best = 0;
            double best_s = -INFINITY;
            for (int g = 0; g < N; g++) {
                int dm = ML->dominant[g];
                double dot = 0;
                for (int t = 0; t < T; t++) dot += (double)S[(size_t)t * E + e] * S[(size_t)t * E + dm];
                double cs = norm[e] > 0 && norm[dm] > 0 ? dot / sqrt(norm[e] * norm[dm]) : 0;
                if (cs > best_s) { best_s = cs; best = g; }
            }
            ML->group[e] = best;
        }
    }
    /* align every member to its dominant expert */
    for (int g = 0; !st && g < N; g++) {
        int dm = ML->dominant[g], have_dom = 0;
        for (int a = 0; a < ff; a++) ML->perm[(size_t)dm * ff + a] = a;
        for (int e = 0; !st && e < E; e++) {
            if (ML->group[e] != g || e == dm) continue;
            if (!have_dom) {
                if ((st = activations(c, CL->layer, dm, CL->x, T, hd, NULL)) != MOE_OK) break;
                standardise(hd, T, ff, td);
                have_dom = 1;
            }
            if ((st = activations(c, CL->layer, e, CL->x, T, hm, NULL)) != MOE_OK) break;
            standardise(hm, T, ff, tm);
            moe_matmul(corr, td, ff, MOE_F32, tm, ff, T);   /* corr[a][b] = <dominant a, member b> */
            for (size_t q = 0; q < (size_t)ff * ff; q++) cost[q] = -(double)corr[q];
            st = moe_hungarian(cost, ff, ML->perm + (size_t)e * ff, NULL);
        }
    }
    if (!st) renumber(ML->group, E, N, ML->dominant);
    free(order); free(norm); free(cost);
    moe_free(hd); moe_free(hm); moe_free(td); moe_free(tm); moe_free(corr);
    return st;
}

static moe_status group_hcsmoe(merge_ctx *c, int i, merge_layer *ML) {
    const moe_calib_layer *CL = &c->cal->layers[i];
    int E = c->cal->E, N = c->o->groups, T = CL->n_kept, d = c->cal->d, ff = c->m->cfg.moe_intermediate;
    if (T < 1) return moe_fail(MOE_EUSAGE, "merge: layer %d kept no calibration tokens", CL->layer);
    double *mean = calloc((size_t)E * d, sizeof(double)), *D = malloc(sizeof(double) * (size_t)E * E);
    float *y = moe_alloc((size_t)T * d * 4), *h = moe_alloc((size_t)T * ff * 4);
    int *size = malloc(sizeof(int) * (size_t)E), *alive = malloc(sizeof(int) * (size_t)E), *cl = malloc(sizeof(int) * (size_t)E);
    moe_status st = mean && D && y && h && size && alive && cl ? MOE_OK : moe_fail(MOE_ENOMEM, "merge: out of memory");
    for (int e = 0; !st && e < E; e++) {
        if ((st = activations(c, CL->layer, e, CL->x, T, h, y)) != MOE_OK) break;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < d; k++) mean[(size_t)e * d + k] += y[(size_t)t * d + k];
        for (int k = 0; k < d; k++) mean[(size_t)e * d + k] /= T;
    }
    if (!st) {
        for (int a = 0; a < E; a++) {
            for (int b = 0; b < E; b++) {
                double s = 0;
                for (int k = 0; k < d; k++) {
                    double v = mean[(size_t)a * d + k] - mean[(size_t)b * d + k];
                    s += v * v;
                }
                D[(size_t)a * E + b] = sqrt(s);
            }
            size[a] = 1;
            alive[a] = 1;
            cl[a] = a;
        }
        /* average linkage: merge the closest pair of clusters (ties: lowest indices) until N remain */
        for (int n = E; n > N; n--) {
            int ba = -1, bb = -1;
            double best = INFINITY;
            for (int a = 0; a < E; a++)
                for (int b = a + 1; alive[a] && b < E; b++)
                    if (alive[b] && D[(size_t)a * E + b] < best) { best = D[(size_t)a * E + b]; ba = a; bb = b; }
            for (int k = 0; k < E; k++) {
                if (!alive[k] || k == ba || k == bb) continue;
                double v = (size[ba] * D[(size_t)ba * E + k] + size[bb] * D[(size_t)bb * E + k]) / (size[ba] + size[bb]);
                D[(size_t)ba * E + k] = D[(size_t)k * E + ba] = v;
            }
            size[ba] += size[bb];
            alive[bb] = 0;
            for (int e = 0; e < E; e++)
                if (cl[e] == bb) cl[e] = ba;
        }
        memcpy(ML->group, cl, sizeof(int) * (size_t)E);   /* cluster ids are expert indices: renumber 0..N-1 */
        int *id = malloc(sizeof(int) * (size_t)E);
        if (!id) st = moe_fail(MOE_ENOMEM, "merge: out of memory");
        for (int e = 0, g = 0; id && e < E; e++) id[e] = alive[e] ? g++ : -1;
        for (int e = 0; id && e < E; e++) ML->group[e] = id[cl[e]];
        free(id);
        if (!st) renumber(ML->group, E, N, NULL);
    }
    free(mean); free(D); free(size); free(alive); free(cl);
    moe_free(y); moe_free(h);
    return st;
}

/* The merged expert of group g of MoE layer i as f32. */
static moe_status merged_group(merge_ctx *c, int i, int g, float *gate, float *up, float *down) {
    const moe_calib_layer *CL = &c->cal->layers[i];
    const merge_layer *ML = &c->L[i];
    int E = c->cal->E, d = c->cal->d, ff = c->m->cfg.moe_intermediate;
    size_t n = (size_t)ff * d;
    double wsum = 0, fsum = 0;
    for (int e = 0; e < E; e++)
        if (ML->group[e] == g) fsum += CL->freq[e];
    memset(c->acc_g, 0, n * sizeof(double));
    memset(c->acc_u, 0, n * sizeof(double));
    memset(c->acc_d, 0, n * sizeof(double));
    for (int e = 0; e < E; e++) {
        if (ML->group[e] != g) continue;
        double w = fsum > 0 ? CL->freq[e] : 1.0;
        if (w == 0) continue;
        moe_ffn_weights fw;
        MOE_TRY(moe_store_acquire(c->m->store, CL->layer, e, &fw));
        int ok = !moe_rows_to_f32(fw.gate.dtype, fw.gate.data, ff, d, c->wg) &&
                 !moe_rows_to_f32(fw.up.dtype, fw.up.data, ff, d, c->wu) &&
                 !moe_rows_to_f32(fw.down.dtype, fw.down.data, d, ff, c->wd);
        moe_store_release(c->m->store, CL->layer, e);
        if (!ok) return moe_fail(MOE_EUSAGE, "merge: expert %d of layer %d has a dtype moe cannot read", e, CL->layer);
        const int *p = ML->perm ? ML->perm + (size_t)e * ff : NULL;
        for (int a = 0; a < ff; a++) {
            int b = p ? p[a] : a;
            const float *sg = c->wg + (size_t)b * d, *su = c->wu + (size_t)b * d;
            double *ag = c->acc_g + (size_t)a * d, *au = c->acc_u + (size_t)a * d;
            for (int k = 0; k < d; k++) { ag[k] += w * sg[k]; au[k] += w * su[k]; }
        }
        for (int k = 0; k < d; k++) {
            const float *sd = c->wd + (size_t)k * ff;
            double *ad = c->acc_d + (size_t)k * ff;
            for (int a = 0; a < ff; a++) ad[a] += w * sd[p ? p[a] : a];
        }
        wsum += w;
    }
    if (!(wsum > 0)) return moe_fail(MOE_EINTERNAL, "merge: group %d of layer %d is empty", g, CL->layer);
    for (size_t q = 0; q < n; q++) {
        gate[q] = (float)(c->acc_g[q] / wsum);
        up[q] = (float)(c->acc_u[q] / wsum);
        down[q] = (float)(c->acc_d[q] / wsum);
    }
    return MOE_OK;
}

static moe_status merged_cb(void *user, int i, int j, float *gate, float *up, float *down) {
    merge_ctx *c = user;
    int g = c->o->hf_layout ? c->L[i].group[j] : j;   /* hf layout: stored expert j is original expert j */
    return merged_group(c, i, g, gate, up, down);
}

moe_status moe_merge_model(moe_model *m, const moe_calib *cal, const char *out_dir, const moe_merge_options *o) {
    MOE_TRY(moe_merge_check(m, o->groups));
    int E = cal->E, N = o->groups, n = cal->n_moe, ff = m->cfg.moe_intermediate, d = cal->d;
    merge_ctx c = {m, cal, o, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    c.L = calloc((size_t)n, sizeof *c.L);
    c.map = malloc(sizeof(int) * (size_t)n * E);
    c.rows = malloc(sizeof(int) * (size_t)n * E);
    size_t fd = (size_t)ff * d;
    c.acc_g = malloc(fd * sizeof(double)); c.acc_u = malloc(fd * sizeof(double)); c.acc_d = malloc(fd * sizeof(double));
    c.wg = moe_alloc(fd * 4); c.wu = moe_alloc(fd * 4); c.wd = moe_alloc(fd * 4);
    cJSON *rep = cJSON_CreateObject(), *layers = rep ? cJSON_AddArrayToObject(rep, "layers") : NULL;
    moe_status st = c.L && c.map && c.rows && c.acc_g && c.acc_u && c.acc_d && c.wg && c.wu && c.wd && layers
                        ? MOE_OK : moe_fail(MOE_ENOMEM, "merge: out of memory");
    if (!st) {
        cJSON_AddStringToObject(rep, "method", o->method == MOE_MERGE_MSMOE ? "msmoe" : "hcsmoe");
        cJSON_AddNumberToObject(rep, "experts", E);
        cJSON_AddNumberToObject(rep, "groups", N);
        cJSON_AddStringToObject(rep, "layout", o->hf_layout ? "hf" : "compact");
        cJSON_AddNumberToObject(rep, "calibration_tokens", cal->n_tokens);
    }
    for (int i = 0; !st && i < n; i++) {
        merge_layer *ML = &c.L[i];
        if (!(ML->group = malloc(sizeof(int) * (size_t)E))) { st = moe_fail(MOE_ENOMEM, "merge: out of memory"); break; }
        st = o->method == MOE_MERGE_MSMOE ? group_msmoe(&c, i, ML) : group_hcsmoe(&c, i, ML);
        if (st) break;
        for (int e = 0; e < E; e++) { c.map[(size_t)i * E + e] = ML->group[e]; c.rows[(size_t)i * E + e] = e; }
        cJSON *jl = cJSON_CreateObject(), *jg = cJSON_CreateArray();
        cJSON_AddNumberToObject(jl, "layer", cal->layers[i].layer);
        for (int g = 0; g < N; g++) {
            cJSON *mem = cJSON_CreateArray();
            for (int e = 0; e < E; e++)
                if (ML->group[e] == g) cJSON_AddItemToArray(mem, cJSON_CreateNumber(e));
            cJSON_AddItemToArray(jg, mem);
        }
        cJSON_AddItemToObject(jl, "groups", jg);
        if (ML->dominant) cJSON_AddItemToObject(jl, "dominant", cJSON_CreateIntArray(ML->dominant, N));
        cJSON_AddItemToArray(layers, jl);
        if (o->log) {
            fprintf(o->log, "merge: layer %d groups", cal->layers[i].layer);
            for (int g = 0; g < N && g < 16; g++) {
                fprintf(o->log, " {");
                for (int e = 0, f = 1; e < E; e++)
                    if (ML->group[e] == g) { fprintf(o->log, "%s%d", f ? "" : ",", e); f = 0; }
                fprintf(o->log, "}");
            }
            fprintf(o->log, "%s\n", N > 16 ? " ..." : "");
        }
    }
    char *text = st ? NULL : cJSON_Print(rep);
    cJSON_Delete(rep);
    if (!st && !text) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (!st) {
        moe_expert_plan p = {o->hf_layout ? E : N, E, c.rows, NULL, o->hf_layout ? NULL : c.map, merged_cb, &c, text,
                             o->shard_bytes, o->log};
        st = moe_expert_rewrite(m, out_dir, &p);
    }
    free(text);
    for (int i = 0; c.L && i < n; i++) { free(c.L[i].group); free(c.L[i].perm); free(c.L[i].dominant); }
    free(c.L); free(c.map); free(c.rows); free(c.acc_g); free(c.acc_u); free(c.acc_d);
    moe_free(c.wg); moe_free(c.wu); moe_free(c.wd);
    return st;
}
