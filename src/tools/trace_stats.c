/* trace_stats.c - numbers, heatmaps and the HTML report of a routing trace (trace_stats.h). */
#include "tools/trace_stats.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "tools/plot.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- numbers --------------------------------------------------------------------------------- */

void moe_trace_stats_free(moe_trace_stats *s) {
    for (uint32_t l = 0; s->layers && l < s->n_layers; l++) {
        moe_stats_layer *L = &s->layers[l];
        free(L->load); free(L->weight_sum); free(L->coact); free(L->trans);
        free(L->top_id); free(L->top_count); free(L->top_share);
    }
    free(s->layers);
    memset(s, 0, sizeof *s);
}

typedef struct pair { uint32_t e; int32_t id; } pair;
static int cmp_pair(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}
static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The distinct experts of token i at traced layer l into set[], returning their count. */
static int expert_set(const moe_trace *t, size_t i, size_t l, uint32_t *stamp, uint32_t mark, uint32_t *set) {
    int n = 0;
    const uint16_t *ex = t->expert + (i * t->n_moe + l) * t->k;
    for (uint32_t j = 0; j < t->k; j++) {
        uint16_t e = ex[j];
        if (e == MOE_TRACE_NO_EXPERT || stamp[e] == mark) continue;
        stamp[e] = mark;
        set[n++] = e;
    }
    return n;
}

/* Per expert, the MOE_STATS_TOP token ids routed to it most often (ties: lower id first). */
static moe_status top_tokens(const moe_trace *t, size_t l, moe_stats_layer *L, const int32_t *uniq, const uint64_t *occ,
                             size_t n_uniq) {
    size_t T = (size_t)t->n_tokens, K = t->k, E = t->n_experts, n = 0;
    pair *p = malloc(sizeof *p * (T * K + 1));
    if (!p) return moe_fail(MOE_ENOMEM, "stats: out of memory");
    for (size_t i = 0; i < T; i++)
        for (size_t j = 0; j < K; j++) {
            uint16_t e = t->expert[(i * t->n_moe + l) * K + j];
            if (e != MOE_TRACE_NO_EXPERT) p[n++] = (pair){e, t->token[i]};
        }
    qsort(p, n, sizeof *p, cmp_pair);
    for (size_t x = 0; x < E * MOE_STATS_TOP; x++) { L->top_id[x] = -1; L->top_count[x] = 0; L->top_share[x] = 0; }
    for (size_t a = 0; a < n;) {
        size_t b = a;
        while (b < n && p[b].e == p[a].e && p[b].id == p[a].id) b++;
        uint64_t cnt = b - a;
        int32_t id = p[a].id;
        int32_t *ti = L->top_id + (size_t)p[a].e * MOE_STATS_TOP;
        uint64_t *tc = L->top_count + (size_t)p[a].e * MOE_STATS_TOP;
        double *ts = L->top_share + (size_t)p[a].e * MOE_STATS_TOP;
        /* ids arrive ascending within an expert, so a strictly larger count is needed to move up */
        int pos = MOE_STATS_TOP;
        while (pos > 0 && (ti[pos - 1] < 0 || tc[pos - 1] < cnt)) pos--;
        if (pos < MOE_STATS_TOP) {
            memmove(ti + pos + 1, ti + pos, sizeof *ti * (MOE_STATS_TOP - 1 - pos));
            memmove(tc + pos + 1, tc + pos, sizeof *tc * (MOE_STATS_TOP - 1 - pos));
            memmove(ts + pos + 1, ts + pos, sizeof *ts * (MOE_STATS_TOP - 1 - pos));
            const int32_t *f = bsearch(&id, uniq, n_uniq, sizeof *uniq, cmp_i32);
            ti[pos] = id;
            tc[pos] = cnt;
            ts[pos] = f ? (double)cnt / (double)occ[f - uniq] : 0;
        }
        a = b;
    }
    free(p);
    return MOE_OK;
}

moe_status moe_trace_stats_compute(const moe_trace *t, moe_trace_stats *s) {
    memset(s, 0, sizeof *s);
    size_t T = (size_t)t->n_tokens, L = t->n_moe, E = t->n_experts;
    int matrices = E <= MOE_STATS_MAX_MATRIX;
    s->n_layers = t->n_moe;
    s->E = t->n_experts;
    s->n_tokens = t->n_tokens;
    s->layers = calloc(L, sizeof *s->layers);
    uint32_t *stamp = calloc(E, sizeof *stamp), *set = malloc(sizeof *set * (E + 1)), *set2 = malloc(sizeof *set2 * (E + 1));
    uint32_t *stamp2 = calloc(E, sizeof *stamp2);
    int32_t *uniq = malloc(sizeof *uniq * (T + 1));
    uint64_t *occ = calloc(T + 1, sizeof *occ);
    moe_status st = MOE_OK;
    if (!s->layers || !stamp || !set || !set2 || !stamp2 || !uniq || !occ) st = moe_fail(MOE_ENOMEM, "stats: out of memory");
    size_t n_uniq = 0;
    if (!st) {
        /* occurrences of each token id */
        memcpy(uniq, t->token, sizeof *uniq * T);
        qsort(uniq, T, sizeof *uniq, cmp_i32);
        for (size_t i = 0; i < T; i++) {
            if (n_uniq == 0 || uniq[n_uniq - 1] != uniq[i]) { uniq[n_uniq] = uniq[i]; occ[n_uniq++] = 0; }
            occ[n_uniq - 1]++;
        }
    }
    uint32_t mark = 0;
    double used_total = 0;
    for (size_t l = 0; l < L && !st; l++) {
        moe_stats_layer *S = &s->layers[l];
        S->layer = t->layer[l];
        S->load = calloc(E, sizeof *S->load);
        S->weight_sum = calloc(E, sizeof *S->weight_sum);
        S->top_id = malloc(sizeof *S->top_id * E * MOE_STATS_TOP);
        S->top_count = malloc(sizeof *S->top_count * E * MOE_STATS_TOP);
        S->top_share = malloc(sizeof *S->top_share * E * MOE_STATS_TOP);
        if (matrices) {
            S->coact = calloc(E * E, sizeof *S->coact);
            if (l + 1 < L) { S->trans = calloc(E * E, sizeof *S->trans); S->trans_to = t->layer[l + 1]; }
        }
        if (!S->load || !S->weight_sum || !S->top_id || !S->top_count || !S->top_share || (matrices && !S->coact) ||
            (matrices && l + 1 < L && !S->trans)) {
            st = moe_fail(MOE_ENOMEM, "stats: out of memory");
            break;
        }
        double hsum = 0;
        for (size_t i = 0; i < T; i++) {
            int n = expert_set(t, i, l, stamp, ++mark, set);
            used_total += n;
            for (int a = 0; a < n; a++) {
                S->load[set[a]]++;
                for (int b = 0; S->coact && b < n; b++) S->coact[(size_t)set[a] * E + set[b]]++;
            }
            for (uint32_t j = 0; j < t->k; j++) {
                size_t x = (i * L + l) * t->k + j;
                if (t->expert[x] != MOE_TRACE_NO_EXPERT) S->weight_sum[t->expert[x]] += t->weight[x];
            }
            float h = t->entropy[i * L + l];
            if (h >= 0) { hsum += h; S->entropy_tokens++; }
            if (S->trans) {
                int n2 = expert_set(t, i, l + 1, stamp2, mark, set2);
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < n2; b++) S->trans[(size_t)set[a] * E + set2[b]]++;
            }
        }
        S->entropy_mean = S->entropy_tokens ? hsum / (double)S->entropy_tokens : -1;
        uint64_t tot = 0;
        for (size_t e = 0; e < E; e++) tot += S->load[e];
        S->load_entropy = 0;
        for (size_t e = 0; e < E && tot; e++)
            if (S->load[e]) {
                double p = (double)S->load[e] / (double)tot;
                S->load_entropy -= p * log(p);
            }
        st = top_tokens(t, l, S, uniq, occ, n_uniq);
    }
    s->experts_per_token = T && L ? used_total / ((double)T * (double)L) : 0;
    free(stamp); free(stamp2); free(set); free(set2); free(uniq); free(occ);
    if (st) moe_trace_stats_free(s);
    return st;
}

/* ---- files ----------------------------------------------------------------------------------- */

static moe_status open_in(moe_atomic_file *af, const char *dir, const char *name) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return moe_fail(MOE_EUSAGE, "%s: path too long", dir);
    return moe_atomic_open(af, path);
}

static void json_text(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void json_u64_matrix(FILE *f, const uint64_t *m, size_t E) {
    fputc('[', f);
    for (size_t i = 0; i < E; i++) {
        fprintf(f, "%s[", i ? ",\n  " : "");
        for (size_t j = 0; j < E; j++) fprintf(f, "%s%llu", j ? "," : "", (unsigned long long)m[i * E + j]);
        fputc(']', f);
    }
    fputc(']', f);
}

static moe_status write_json(const moe_trace *t, const moe_trace_stats *s, const char *dir) {
    moe_atomic_file af;
    MOE_TRY(open_in(&af, dir, "stats.json"));
    FILE *f = af.f;
    size_t E = s->E;
    fprintf(f, "{\"model\": ");
    json_text(f, t->model);
    fprintf(f, ", \"tokens\": %llu, \"experts\": %u, \"slots\": %u, \"experts_per_token\": %.9g, \"layers\": [",
            (unsigned long long)s->n_tokens, s->E, t->k, s->experts_per_token);
    for (uint32_t l = 0; l < s->n_layers; l++) {
        const moe_stats_layer *L = &s->layers[l];
        fprintf(f, "%s\n{\"layer\": %u, \"entropy_mean\": %.9g, \"entropy_tokens\": %llu, \"load_entropy\": %.9g,\n \"load\": [",
                l ? "," : "", L->layer, L->entropy_mean, (unsigned long long)L->entropy_tokens, L->load_entropy);
        for (size_t e = 0; e < E; e++) fprintf(f, "%s%llu", e ? "," : "", (unsigned long long)L->load[e]);
        fprintf(f, "],\n \"weight_sum\": [");
        for (size_t e = 0; e < E; e++) fprintf(f, "%s%.9g", e ? "," : "", L->weight_sum[e]);
        fprintf(f, "],\n \"top_tokens\": [");
        for (size_t e = 0; e < E; e++) {
            fprintf(f, "%s[", e ? "," : "");
            for (int j = 0; j < MOE_STATS_TOP && L->top_id[e * MOE_STATS_TOP + j] >= 0; j++)
                fprintf(f, "%s[%d,%llu,%.9g]", j ? "," : "", L->top_id[e * MOE_STATS_TOP + j],
                        (unsigned long long)L->top_count[e * MOE_STATS_TOP + j], L->top_share[e * MOE_STATS_TOP + j]);
            fputc(']', f);
        }
        fprintf(f, "],\n \"coactivation\": ");
        if (L->coact) json_u64_matrix(f, L->coact, E);
        else fprintf(f, "null");
        if (L->trans) {
            fprintf(f, ",\n \"transition_to\": %u, \"transition\": ", L->trans_to);
            json_u64_matrix(f, L->trans, E);
        } else {
            fprintf(f, ",\n \"transition_to\": null, \"transition\": null");
        }
        fputc('}', f);
    }
    fprintf(f, "]}\n");
    return moe_atomic_commit(&af);
}

/* Base64 of a buffer, for inline images. */
static void base64(FILE *f, const unsigned char *p, size_t n) {
    static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(k[v >> 18 & 63], f);
        fputc(k[v >> 12 & 63], f);
        fputc(i + 1 < n ? k[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? k[v & 63] : '=', f);
    }
}

/* Draw a heatmap, write it as dir/name and inline it into the report. */
static moe_status picture(FILE *html, const char *dir, const char *name, const moe_heatmap *h, const char *alt) {
    moe_image im;
    MOE_TRY(moe_heatmap_draw(h, &im));
    unsigned char *png = NULL;
    size_t len = 0;
    moe_status st = moe_image_png(&im, &png, &len);
    moe_image_free(&im);
    char path[4096];
    if (!st && (size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) st = moe_fail(MOE_EUSAGE, "%s: path too long", dir);
    moe_atomic_file af;
    if (!st) st = moe_atomic_open(&af, path);
    if (!st) {
        if (fwrite(png, 1, len, af.f) != len) { moe_atomic_abort(&af); st = moe_fail(MOE_EIO, "%s: write failed", path); }
        else st = moe_atomic_commit(&af);
    }
    if (!st) {
        fprintf(html, "<figure><img alt=\"%s\" src=\"data:image/png;base64,", alt);
        base64(html, png, len);
        fprintf(html, "\"><figcaption>%s (%s)</figcaption></figure>\n", alt, name);
    }
    free(png);
    return st;
}

/* A token's text for HTML: escaped, with line breaks and tabs shown as \n and \t. */
static void html_token(FILE *f, const moe_trace *t, int32_t id) {
    const char *p = moe_trace_piece(t, id);
    if (!p) { fprintf(f, "<code>#%d</code>", id); return; }
    fputs("<code>&quot;", f);
    for (; *p; p++) {
        switch (*p) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default: fputc(*p, f);
        }
    }
    fputs("&quot;</code>", f);
}

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

/* Inline SVG bar chart of two series per layer, both in [0, 1]. */
static void svg_bars(FILE *f, const moe_trace_stats *s, const double *a, const double *b, const char *la, const char *lb) {
    int n = (int)s->n_layers, bw = n > 60 ? 6 : 10, gap = 4, W = 60 + n * (2 * bw + gap) + 20, H = 260, base = 220;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", W, H + 20);
    for (int g = 0; g <= 4; g++) {
        int y = base - g * 50;
        fprintf(f, "<line x1=\"50\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/><text x=\"45\" y=\"%d\" text-anchor=\"end\">%.2f</text>\n",
                y, W - 10, y, y + 4, g * 0.25);
    }
    for (int l = 0; l < n; l++) {
        int x = 60 + l * (2 * bw + gap);
        double va = a[l] < 0 ? 0 : a[l] > 1 ? 1 : a[l], vb = b[l] < 0 ? 0 : b[l] > 1 ? 1 : b[l];
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"#3b528b\"><title>layer %u: %.4f</title></rect>",
                x, base - 200 * va, bw, 200 * va, s->layers[l].layer, a[l]);
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"#5ec962\"><title>layer %u: %.4f</title></rect>\n",
                x + bw, base - 200 * vb, bw, 200 * vb, s->layers[l].layer, b[l]);
        if (n <= 40 || l % 5 == 0)
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%u</text>\n", x + bw, base + 14, s->layers[l].layer);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">layer</text>\n", W / 2, base + 30);
    fprintf(f, "<rect x=\"60\" y=\"%d\" width=\"10\" height=\"10\" fill=\"#3b528b\"/><text x=\"75\" y=\"%d\">%s</text>\n", H + 2, H + 11, la);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"#5ec962\"/><text x=\"%d\" y=\"%d\">%s</text>\n", W / 2, H + 2,
            W / 2 + 15, H + 11, lb);
    fprintf(f, "</svg>\n");
}

static moe_status write_report(const moe_trace *t, const moe_trace_stats *s, const char *dir) {
    size_t E = s->E, NL = s->n_layers;
    double logE = log((double)E);
    moe_atomic_file af;
    MOE_TRY(open_in(&af, dir, "report.html"));
    FILE *f = af.f;
    moe_status st = MOE_OK;
    double *v = malloc(sizeof *v * (NL * E > E * E ? NL * E : E * E) + 8), *ha = malloc(sizeof *ha * NL + 8), *hb = malloc(sizeof *hb * NL + 8);
    int *row_ids = malloc(sizeof *row_ids * NL + 8);
    if (!v || !ha || !hb || !row_ids) st = moe_fail(MOE_ENOMEM, "stats: out of memory");
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>moe stats: ");
    html_text(f, t->model);
    fprintf(f, "</title>\n<style>body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}"
               "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
               "td.l,th.l{text-align:left}figure{display:inline-block;margin:0.5em 1em 0.5em 0;vertical-align:top}"
               "figcaption{font-size:90%%;color:#555}code{background:#f3f3f3;padding:0 2px}</style></head><body>\n");
    fprintf(f, "<h1>Routing statistics</h1>\n<p>Model <code>");
    html_text(f, t->model);
    fprintf(f, "</code>: %llu tokens, %u MoE layers of %u experts, %u slots per token and layer, %.3f experts per token "
               "on average. Written by <code>moe stats</code> from a <code>moe trace</code>; every number is in "
               "<code>stats.json</code>.</p>\n",
            (unsigned long long)s->n_tokens, s->n_layers, s->E, t->k, s->experts_per_token);
    /* load heatmap */
    if (!st) {
        for (size_t l = 0; l < NL; l++) {
            uint64_t tot = 0;
            for (size_t e = 0; e < E; e++) tot += s->layers[l].load[e];
            for (size_t e = 0; e < E; e++) v[l * E + e] = tot ? (double)s->layers[l].load[e] * (double)E / (double)tot : NAN;
            row_ids[l] = (int)s->layers[l].layer;
        }
        fprintf(f, "<h2>Expert load</h2>\n<p>Tokens routed to each expert relative to a perfectly balanced layer "
                   "(1 = its fair share, 0 = never used).</p>\n");
        moe_heatmap h = {v, (int)NL, (int)E, "EXPERT LOAD / FAIR SHARE", "EXPERT", "LAYER", "LOAD / FAIR SHARE", row_ids, NULL, 0, 0, 0};
        st = picture(f, dir, "load.png", &h, "expert load per layer, relative to a balanced layer");
    }
    /* entropy chart and table */
    if (!st) {
        for (size_t l = 0; l < NL; l++) {
            ha[l] = logE > 0 && s->layers[l].entropy_mean >= 0 ? s->layers[l].entropy_mean / logE : 0;
            hb[l] = logE > 0 ? s->layers[l].load_entropy / logE : 0;
        }
        fprintf(f, "<h2>Routing entropy</h2>\n<p>Blue: mean entropy of the router's score distribution per token (how "
                   "undecided the router is), green: entropy of the layer's expert load (how balanced the layer is), "
                   "both divided by log E = %.3f nats, the entropy of a uniform choice.</p>\n", logE);
        svg_bars(f, s, ha, hb, "router entropy / log E", "load entropy / log E");
        fprintf(f, "<table><tr><th>layer</th><th>router entropy (nats)</th><th>load entropy (nats)</th><th>max / mean load</th>"
                   "<th>busiest expert</th><th>idlest expert</th><th>unused experts</th></tr>\n");
        for (size_t l = 0; l < NL; l++) {
            const moe_stats_layer *L = &s->layers[l];
            uint64_t tot = 0, mx = 0, mn = UINT64_MAX;
            size_t bi = 0, li = 0, unused = 0;
            for (size_t e = 0; e < E; e++) {
                tot += L->load[e];
                if (L->load[e] > mx) { mx = L->load[e]; bi = e; }
                if (L->load[e] < mn) { mn = L->load[e]; li = e; }
                unused += L->load[e] == 0;
            }
            fprintf(f, "<tr><td>%u</td><td>%.4f</td><td>%.4f</td><td>%.2f</td><td>%zu</td><td>%zu</td><td>%zu</td></tr>\n", L->layer,
                    L->entropy_mean, L->load_entropy, tot ? (double)mx * E / (double)tot : 0.0, bi, li, unused);
        }
        fprintf(f, "</table>\n");
    }
    /* per layer: co-activation, transitions, preferred tokens */
    for (size_t l = 0; l < NL && !st; l++) {
        const moe_stats_layer *L = &s->layers[l];
        char name[64], title[96];
        fprintf(f, "<h2>Layer %u</h2>\n", L->layer);
        if (L->coact) {
            for (size_t i = 0; i < E; i++)
                for (size_t j = 0; j < E; j++) v[i * E + j] = i == j ? NAN : (double)L->coact[i * E + j] / (double)(s->n_tokens ? s->n_tokens : 1);
            snprintf(name, sizeof name, "coact_L%u.png", L->layer);
            snprintf(title, sizeof title, "LAYER %u: CO-ACTIVATION", L->layer);
            moe_heatmap h = {v, (int)E, (int)E, title, "EXPERT", "EXPERT", "SHARE OF TOKENS", NULL, NULL, 0, 0, 480};
            st = picture(f, dir, name, &h, "share of tokens that use both experts (diagonal grey)");
        }
        if (!st && L->trans) {
            for (size_t i = 0; i < E; i++)
                for (size_t j = 0; j < E; j++) v[i * E + j] = L->load[i] ? (double)L->trans[i * E + j] / (double)L->load[i] : NAN;
            snprintf(name, sizeof name, "trans_L%u.png", L->layer);
            snprintf(title, sizeof title, "LAYER %u TO %u: TRANSITIONS", L->layer, L->trans_to);
            char yl[32], xl[32];
            snprintf(yl, sizeof yl, "EXPERT IN LAYER %u", L->layer);
            snprintf(xl, sizeof xl, "EXPERT IN LAYER %u", L->trans_to);
            moe_heatmap h = {v, (int)E, (int)E, title, xl, yl, "P(NEXT | THIS)", NULL, NULL, 0, 0, 480};
            st = picture(f, dir, name, &h, "probability of each expert at the next MoE layer given this layer's expert");
        }
        if (st) break;
        uint64_t tot = 0;
        for (size_t e = 0; e < E; e++) tot += L->load[e];
        fprintf(f, "<details><summary>Tokens each expert prefers</summary>\n<table><tr><th>expert</th><th>load</th>"
                   "<th class=\"l\">most frequent tokens: count (share of that token's occurrences)</th></tr>\n");
        for (size_t e = 0; e < E; e++) {
            fprintf(f, "<tr><td>%zu</td><td>%.2f%%</td><td class=\"l\">", e, tot ? 100.0 * (double)L->load[e] / (double)tot : 0.0);
            for (int j = 0; j < MOE_STATS_TOP && L->top_id[e * MOE_STATS_TOP + j] >= 0; j++) {
                if (j) fputs(", ", f);
                html_token(f, t, L->top_id[e * MOE_STATS_TOP + j]);
                fprintf(f, " %llu (%.0f%%)", (unsigned long long)L->top_count[e * MOE_STATS_TOP + j],
                        100.0 * L->top_share[e * MOE_STATS_TOP + j]);
            }
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table></details>\n");
    }
    fprintf(f, "</body></html>\n");
    free(v); free(ha); free(hb); free(row_ids);
    if (st) { moe_atomic_abort(&af); return st; }
    return moe_atomic_commit(&af);
}

moe_status moe_trace_stats_write(const moe_trace *t, const moe_trace_stats *s, const char *dir) {
    MOE_TRY(write_json(t, s, dir));
    return write_report(t, s, dir);
}
