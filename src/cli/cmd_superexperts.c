/* cmd_superexperts.c - `moe superexperts MODEL --text FILE`: find the experts whose down-projection
 * outputs show extreme outliers (Super Experts, Su et al. 2025) and report them with their magnitude.
 *
 * For every routed expert, the largest |f_e(x)[c]| over the tokens routed to it and all channels c
 * (f_e's output is its down projection's output), measured on the text through the public hooks
 * (src/tools/expert_calib.h). As in the paper's profiling rule, an expert is a super expert when its
 * magnitude is at least the q-quantile (default 99.5%) of all experts' magnitudes and at least a
 * fraction (default 1/10) of the largest one. */
#include "cli/args.h"
#include "cli/calib.h"
#include "cli/commands.h"
#include "cli/outputs.h"
#include "cli/offload.h"
#include "core/error.h"
#include "tools/expert_calib.h"
#include "tools/plot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand { int layer, expert, chan, token; double mag; } cand;

static int by_mag(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->mag != y->mag) return x->mag > y->mag ? -1 : 1;
    if (x->layer != y->layer) return x->layer - y->layer;
    return x->expert - y->expert;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics (numpy's default quantile). */
static double quantile(const double *sorted, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return sorted[n - 1];
    return sorted[i] + (pos - i) * (sorted[i + 1] - sorted[i]);
}

static void print_json_text(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

int cmd_superexperts(int argc, char **argv) {
    const char *text_path = NULL, *ids_path = NULL, *tok_path = NULL, *plot = NULL;
    int max_tokens = 4096, ctx = 512, top = 10, json = 0;
    double q = 0.995, frac = 0.1;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"text", 0, ARG_STR, &text_path, "FILE", "text to run, tokenized with MODEL's tokenizer", 0, 0},
        {"tokens-file", 0, ARG_STR, &ids_path, "FILE", "token ids instead (whitespace or comma separated)", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --text (default: the one in MODEL)", 0, 0},
        {"max-tokens", 0, ARG_INT, &max_tokens, "N", "use at most N tokens (default 4096)", 1, 1 << 30},
        {"ctx", 'c', ARG_INT, &ctx, "N", "tokens per window (default 512)", 1, 1 << 20},
        {"top", 0, ARG_INT, &top, "N", "list the N experts with the largest outputs (default 10)", 1, 1 << 20},
        {"quantile", 0, ARG_FLOAT, &q, "Q", "a super expert is at least this quantile of all experts (default 0.995)", 0, 1},
        {"fraction", 0, ARG_FLOAT, &frac, "F", "... and at least F times the largest (default 0.1)", 0, 1},
        {"plot", 0, ARG_STR, &plot, "FILE", "write a PNG heatmap of every expert's largest output (layers x experts)", 0, 0},
        {"json", 0, ARG_FLAG, &json, NULL, "print the result as one JSON object", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {
        "superexperts", "MODEL (--text FILE | --tokens-file FILE) [options]",
        "Find experts whose down-projection outputs show extreme outliers (Super Experts).",
        "For every routed expert: the largest |output| over the tokens routed to it and all channels, with\n"
        "the channel and token where it occurs. Super experts: magnitude >= the --quantile of all experts'\n"
        "and >= --fraction of the largest (the profiling rule of Su et al. 2025). Lists the --top experts\n"
        "by magnitude, marking super experts. See docs/INSPECT.md.",
        opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!text_path == !ids_path) { fprintf(stderr, "moe superexperts: give exactly one of --text and --tokens-file\n"); return 1; }
    moe_model *m = NULL;
    moe_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int n = 0;
    moe_calib cal = {0};
    cand *c = NULL;
    double *sorted = NULL;
    /* --plot before the work: not a FIFO, a device or one of the model's files */
    moe_status st = plot ? moe_cli_check_output("--plot", plot, pos[0], NULL, 0) : MOE_OK;
    if (!st) st = moe_cli_load_model(pos[0], &ol, &m);
    const moe_model_info *I = m ? moe_model_get_info(m) : NULL;
    if (!st && !I->n_experts) st = moe_fail(MOE_EUSAGE, "%s: the model has no routed experts", pos[0]);
    if (!st) st = moe_cli_calib_tokens(tok_path ? tok_path : pos[0], text_path, ids_path, max_tokens, I->vocab_size, &ids, &n);
    if (!st && moe_tokenizer_load(tok_path ? tok_path : pos[0], &tok) != MOE_OK) tok = NULL;
    if (!st) {
        moe_calib_options co = {ctx, 1, 0, 0, moe_cli_calib_progress, "superexperts"};
        st = moe_calib_run(m, ids, n, &co, &cal);
    }
    int nc = 0, E = cal.E;
    if (!st) {
        c = malloc(sizeof *c * (size_t)cal.n_moe * E + sizeof *c);
        sorted = malloc(sizeof *sorted * (size_t)cal.n_moe * E + sizeof *sorted);
        if (!c || !sorted) st = moe_fail(MOE_ENOMEM, "out of memory");
    }
    for (int l = 0; !st && l < cal.n_moe; l++)
        for (int e = 0; e < E; e++) {
            const moe_calib_layer *L = &cal.layers[l];
            if (L->max_chan[e] < 0) continue;   /* never routed */
            c[nc] = (cand){L->layer, e, L->max_chan[e], L->max_token[e], L->max_abs[e]};
            sorted[nc++] = L->max_abs[e];
        }
    if (!st && nc == 0) st = moe_fail(MOE_EINPUT, "%s: no expert was routed a token", text_path ? text_path : ids_path);
    if (!st) {
        qsort(c, (size_t)nc, sizeof *c, by_mag);
        qsort(sorted, (size_t)nc, sizeof *sorted, cmp_double);
        double thr_q = quantile(sorted, nc, q), thr_f = frac * c[0].mag, median = quantile(sorted, nc, 0.5);
        int n_super = 0;
        while (n_super < nc && c[n_super].mag >= thr_q && c[n_super].mag >= thr_f) n_super++;
        int shown = top < nc ? top : nc;
        if (n_super > shown) shown = n_super;
        if (json) {
            printf("{\"tokens\": %d, \"experts_measured\": %d, \"median\": %.9g, \"quantile\": %.9g, \"quantile_value\": %.9g, "
                   "\"fraction\": %.9g, \"super_experts\": %d, \"top\": [", n, nc, median, q, thr_q, frac, n_super);
            for (int i = 0; i < shown; i++) {
                char *tx = NULL;
                size_t len;
                int32_t id = ids[c[i].token];
                if (tok) moe_tokenizer_decode(tok, &id, 1, 0, &tx, &len);
                printf("%s{\"layer\": %d, \"expert\": %d, \"max_abs\": %.9g, \"channel\": %d, \"token_index\": %d, \"token_id\": %d, "
                       "\"text\": ", i ? ", " : "", c[i].layer, c[i].expert, c[i].mag, c[i].chan, c[i].token, id);
                print_json_text(tx ? tx : "");
                printf(", \"super\": %s}", i < n_super ? "true" : "false");
                free(tx);
            }
            printf("]}\n");
        } else {
            printf("largest down-projection output of %d experts over %d tokens: median %.4g, %.1f%% quantile %.4g, max %.4g\n",
                   nc, n, median, 100 * q, thr_q, c[0].mag);
            printf("%d super expert%s (>= the %.1f%% quantile and >= %.3g x the largest)\n", n_super, n_super == 1 ? "" : "s",
                   100 * q, frac);
            printf("%4s %6s %7s %12s %9s %8s %8s  %s\n", "rank", "layer", "expert", "max |out|", "x median", "channel", "token", "text");
            for (int i = 0; i < shown; i++) {
                char *tx = NULL;
                size_t len;
                int32_t id = ids[c[i].token];
                if (tok) moe_tokenizer_decode(tok, &id, 1, 0, &tx, &len);
                printf("%4d %6d %7d %12.5g %9.1f %8d %8d  ", i + 1, c[i].layer, c[i].expert, c[i].mag,
                       median > 0 ? c[i].mag / median : 0.0, c[i].chan, c[i].token);
                putchar('"');
                for (const char *p = tx ? tx : ""; *p; p++) {
                    if (*p == '\n') fputs("\\n", stdout);
                    else if ((unsigned char)*p >= 0x20) putchar(*p);
                }
                putchar('"');
                printf("%s\n", i < n_super ? "   SUPER" : "");
                free(tx);
            }
        }
        if (plot) {   /* layers x experts, log10 of the magnitude */
            double *v = malloc(sizeof *v * (size_t)cal.n_moe * E);
            int *rows = malloc(sizeof *rows * (size_t)cal.n_moe);
            moe_image im = {0};
            if (!v || !rows) st = moe_fail(MOE_ENOMEM, "out of memory");
            for (int l = 0; !st && l < cal.n_moe; l++) {
                rows[l] = cal.layers[l].layer;
                for (int e = 0; e < E; e++)
                    v[(size_t)l * E + e] = cal.layers[l].max_chan[e] < 0 ? NAN : log10(cal.layers[l].max_abs[e] + 1e-30);
            }
            moe_heatmap h = {v, cal.n_moe, E, "LARGEST EXPERT OUTPUT (LOG10)", "EXPERT", "LAYER", "LOG10 MAX |OUTPUT|", rows, NULL, 0, 0, 0};
            if (!st) st = moe_heatmap_draw(&h, &im);
            if (!st) st = moe_image_write_png(&im, plot);
            if (!st && !json) printf("wrote %s\n", plot);
            moe_image_free(&im);
            free(v);
            free(rows);
        }
    }
    int rc = st ? moe_cli_error(st) : 0;
    free(c);
    free(sorted);
    moe_calib_free(&cal);
    moe_tokenizer_free(tok);
    free(ids);
    moe_model_free(m);
    return rc;
}
