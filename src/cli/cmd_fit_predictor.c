/* cmd_fit_predictor.c - `moe fit-predictor MODEL --text FILE`: fit the cross-layer expert predictor that
 * --prefetch uses to read the next layer's experts ahead (src/tools/predictor_fit.h), and report how
 * many of each layer's experts it finds on held-out tokens, against the router-as-predictor default. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "cli/outputs.h"
#include "cli/progress.h"
#include "cli/token_file.h"
#include "core/error.h"
#include "io/json.h"
#include "tools/predictor_fit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void progress(void *user, int pass, int passes, int done, int total) {
    int tty = *(int *)user;
    if (!tty && done < total) return;
    fprintf(stderr, "%sfit-predictor pass %d/%d ", tty ? "\r" : "", pass, passes);
    moe_cli_bar(stderr, done, total, 30);
    fprintf(stderr, " %d/%d tokens", done, total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static void put_nums(const double *v, int n, const char *fmt) {
    for (int i = 0; i < n; i++) {
        if (i) printf(", ");
        moe_json_put_num(stdout, fmt, v[i]);
    }
}

int cmd_fit_predictor(int argc, char **argv) {
    const char *tokens_path = NULL, *text_path = NULL, *tok_path = NULL, *out = NULL;
    int ctx = 256, max_tokens = 65536, json = 0;
    double ridge = 0, holdout = 0.1;
    int64_t fit_memory = (int64_t)2 << 30;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"text", 0, ARG_STR, &text_path, "FILE", "calibration text, tokenized with the model's tokenizer.json", 0, 0},
        {"tokens-file", 0, ARG_STR, &tokens_path, "FILE", "calibration token ids, whitespace or comma separated", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --text (default: the one in MODEL)", 0, 0},
        {"output", 'o', ARG_STR, &out, "FILE", "where to write the predictor (default MODEL/moe_predictor.safetensors)", 0, 0},
        {"max-tokens", 0, ARG_INT, &max_tokens, "N", "use at most the first N tokens (default 65536)", 1, 2147483647},
        {"ctx", 'c', ARG_INT, &ctx, "N", "tokens per window; each window is one sequence (default 256)", 1, 1 << 20},
        {"ridge", 0, ARG_FLOAT, &ridge, "R", "ridge strength relative to the mean feature energy; 0 (default): chosen on held-out tokens", 0, 1e6},
        {"holdout", 0, ARG_FLOAT, &holdout, "F", "share of the tokens held out to measure the predictor (default 0.1)", 0, 0.9},
        {"fit-memory", 0, ARG_BYTES, &fit_memory, "BYTES", "memory for the normal equations; more layers per pass (default 2G)", 0, 0},
        {"json", 0, ARG_FLAG, &json, NULL, "print the report as one JSON object", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {
        "fit-predictor", "MODEL (--text FILE | --tokens-file FILE) [-o FILE] [options]",
        "Fit the cross-layer expert predictor that --prefetch --predictor FILE reads experts ahead by.",
        "For each MoE layer after the first, two linear maps from the previous MoE layer's hidden states to\n"
        "this layer's router logits (the early and the late guess of docs/OFFLOAD.md) are fitted by ridge\n"
        "regression on the calibration tokens, shrunk towards the layer's own router. The report gives, per\n"
        "layer, the share of the experts each token uses that the guesses find on held-out tokens, with the\n"
        "router itself as predictor (what --prefetch does without --predictor) and with the fitted maps.\n"
        "By default the ridge strength is chosen per layer and guess (1e-6 .. 1e-1, or the router's own gate\n"
        "if no fit beats it) on the first half of the held-out tokens, and the report uses the second half.\n"
        "The model may be loaded with --mem-budget like any other command.",
        opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!tokens_path == !text_path) {
        fprintf(stderr, "moe fit-predictor: give exactly one of --tokens-file and --text (see moe fit-predictor --help)\n");
        return 1;
    }
    if (ol.prefetch || ol.predictor) {
        fprintf(stderr, "moe fit-predictor: --prefetch and --predictor do not apply to fitting\n");
        return 1;
    }
    char *def_out = NULL;
    if (!out) {
        size_t len = strlen(pos[0]) + 32;
        if (!(def_out = malloc(len))) return moe_cli_error(moe_fail(MOE_ENOMEM, "out of memory"));
        snprintf(def_out, len, "%s/moe_predictor.safetensors", pos[0]);
        out = def_out;
    }
    int32_t *ids = NULL;
    int n = 0, tty = isatty(2);
    /* fail before the fit, not after it, if the output cannot be written or is one of the inputs */
    const char *ins[] = {text_path, tokens_path, tok_path};
    moe_status st = moe_cli_check_output("-o", out, pos[0], ins, 3);
    if (st) {
        free(def_out);
        return moe_cli_error(st);
    }
    moe_model *m = NULL;
    moe_predictor_fit_report rep = {0};
    st = text_path ? moe_cli_tokenize_file(tok_path ? tok_path : pos[0], text_path, max_tokens, &ids, &n)
                   : moe_cli_read_token_file(tokens_path, &ids, &n);
    const char *src = text_path ? text_path : tokens_path;
    if (!st && n > max_tokens) n = max_tokens;
    if (!st && n < 2) st = moe_fail(MOE_EINPUT, "%s: need at least 2 tokens, found %d", src, n);
    if (!st) st = moe_cli_load_model(pos[0], &ol, &m);
    int vocab = m ? moe_model_get_info(m)->vocab_size : 0;
    if (!st) st = moe_cli_check_vocab(src, ids, n, vocab);
    double t0 = moe_cli_seconds();
    moe_predictor_fit_options fo = {ctx, ridge, holdout, fit_memory, progress, &tty};
    if (!st) st = moe_predictor_fit(m, ids, n, &fo, out, &rep);
    if (!st && json) {
        /* the path is escaped; shares of zero held-out tokens are not finite and become null */
        printf("{\"output\": ");
        moe_json_put_str(stdout, out);
        printf(", \"fit_tokens\": %d, \"val_tokens\": %d, \"passes\": %d, \"seconds\": %.3f, \"layers\": [",
               rep.fit_tokens, rep.val_tokens, rep.passes, moe_cli_seconds() - t0);
        for (int i = 0; i < rep.n_layers; i++) {
            const moe_predictor_fit_layer *L = &rep.layers[i];
            printf("%s{\"layer\": %d, \"ridge\": [", i ? ", " : "", L->layer);
            put_nums(L->ridge, 2, "%g");
            printf("], \"router\": [");
            put_nums(L->found[0], 3, "%.6f");
            printf("], \"fitted\": [");
            put_nums(L->found[1], 3, "%.6f");
            printf("]}");
        }
        printf("], \"router\": [");
        put_nums(rep.found[0], 3, "%.6f");
        printf("], \"fitted\": [");
        put_nums(rep.found[1], 3, "%.6f");
        printf("]}\n");
    } else if (!st) {
        printf("wrote %s: predictors for %d MoE layers, fitted on %d tokens in %d pass%s (%.1f s)\n", out, rep.n_layers,
               rep.fit_tokens, rep.passes, rep.passes == 1 ? "" : "es", moe_cli_seconds() - t0);
        if (rep.val_tokens > 0) {
            printf("share of each token's experts found on %d held-out tokens (early guess, late guess, either):\n",
                   rep.val_tokens);
            printf("%8s  %-26s %-26s %s\n", "layer", "router as predictor", "fitted predictor", "ridge (early, late; 0: router)");
            for (int i = 0; i <= rep.n_layers; i++) {
                const double (*f)[3] = i < rep.n_layers ? rep.layers[i].found : rep.found;
                char name[16];
                if (i < rep.n_layers) snprintf(name, sizeof name, "%d", rep.layers[i].layer);
                else snprintf(name, sizeof name, "all");
                printf("%8s  %5.1f%% %5.1f%% %5.1f%%       %5.1f%% %5.1f%% %5.1f%%", name, 100 * f[0][0], 100 * f[0][1],
                       100 * f[0][2], 100 * f[1][0], 100 * f[1][1], 100 * f[1][2]);
                if (i < rep.n_layers) printf("        %g, %g", rep.layers[i].ridge[0], rep.layers[i].ridge[1]);
                printf("\n");
            }
        }
    }
    int rc = st ? moe_cli_error(st) : 0;
    free(rep.layers);
    free(ids);
    free(def_out);
    moe_model_free(m);
    return rc;
}
