/* cmd_logits.c - `moe logits MODEL --tokens 1,2,3`: causal prefill, every position's logits as JSON
 * {"logits": [[...vocab floats...], ...]}; optionally the routing decisions of every MoE layer. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "cli/outputs.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include "moe.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A float as JSON text. Weights holding NaN or Inf give non-finite logits, which JSON cannot spell:
 * they are written as null, counted, and the document gets an "error" member (and the command exits 2). */
static void put_float(FILE *f, const char *sep, float x, size_t *nonfinite) {
    fputs(sep, f);
    *nonfinite += (size_t)moe_json_put_num(f, "%.9g", x);
}

typedef struct route_log {
    FILE *f;
    int first;
    size_t nonfinite;
} route_log;

static void log_route(void *user, const moe_routing *r) {
    route_log *rl = user;
    for (int t = 0; t < r->n_tokens; t++) {
        fprintf(rl->f, "%s\n  {\"layer\": %d, \"pos\": %d, \"experts\": [", rl->first ? "" : ",", r->layer, r->pos[t]);
        rl->first = 0;
        for (int j = 0; j < r->top_k; j++) fprintf(rl->f, "%s%d", j ? ", " : "", r->expert[t * r->top_k + j]);
        fprintf(rl->f, "], \"weights\": [");
        for (int j = 0; j < r->top_k; j++) put_float(rl->f, j ? ", " : "", r->weight[t * r->top_k + j], &rl->nonfinite);
        fprintf(rl->f, "], \"scores\": [");
        for (int e = 0; e < r->n_experts; e++)
            put_float(rl->f, e ? ", " : "", r->scores[(size_t)t * r->n_experts + e], &rl->nonfinite);
        fprintf(rl->f, "]}");
    }
}

/* Close a document whose array just ended, with an "error" member if values were written as null. */
static void close_doc(FILE *f, size_t nonfinite, const char *what) {
    if (nonfinite) fprintf(f, ",\n\"error\": \"%zu %s are NaN or infinite (written as null): the weights are not finite\"", nonfinite, what);
    fprintf(f, "}\n");
}

static size_t write_logits(FILE *f, const float *logits, int n, int vocab) {
    size_t bad = 0;
    fprintf(f, "{\"logits\": [");
    for (int t = 0; t < n; t++) {
        fprintf(f, "%s\n[", t ? "," : "");
        for (int v = 0; v < vocab; v++) put_float(f, v ? "," : "", logits[(size_t)t * vocab + v], &bad);
        fprintf(f, "]");
    }
    fprintf(f, "\n]");
    close_doc(f, bad, "logits");
    return bad;
}

int cmd_logits(int argc, char **argv) {
    const char *tokens_s = NULL, *out = NULL, *routes = NULL;
    int stepwise = 0, ctx = 0;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"tokens", 0, ARG_STR, &tokens_s, "IDS", "comma-separated input token ids (required)", 0, 0},
        {"out", 'o', ARG_STR, &out, "FILE", "write the JSON here (atomically) instead of stdout", 0, 0},
        {"routes", 0, ARG_STR, &routes, "FILE", "also write every MoE layer's routing decisions as JSON", 0, 0},
        {"stepwise", 0, ARG_FLAG, &stepwise, NULL, "feed one token at a time through the KV cache", 0, 0},
        {"ctx", 'c', ARG_INT, &ctx, "N", "context size (default: number of tokens)", 1, 1 << 24},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        MOE_CLI_ROUTE_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {"logits", "MODEL --tokens IDS [options]",
                               "Run a causal prefill and write one row of vocab-size logits per input position.",
                               "Output: {\"logits\": [[...], ...]}. With --routes, FILE gets {\"routes\": [{\"layer\",\n"
                               "\"pos\", \"experts\", \"weights\", \"scores\"}, ...]} (scores: router probabilities).",
                               opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!tokens_s) { fprintf(stderr, "moe logits: --tokens is required (see moe logits --help)\n"); return 1; }
    int32_t *tokens;
    int n = moe_parse_int_list("logits", "--tokens", tokens_s, &tokens);
    if (n < 0) return 1;
    if (ctx > 0 && ctx < n) {
        fprintf(stderr, "moe logits: --ctx %d is less than the %d tokens given\n", ctx, n);
        free(tokens);
        return 1;
    }
    moe_model *m = NULL;
    moe_session *s = NULL;
    float *logits = NULL;
    route_log rl = {NULL, 1, 0};
    size_t bad_logits = 0;
    moe_atomic_file af_routes = {0}, af_out = {0};
    /* outputs are checked before any work: never a FIFO or device, never the model's own files */
    const char *ins[] = {ol.predictor, out};
    moe_status st = MOE_OK;
    if (out) st = moe_cli_check_output("--out", out, pos[0], ins, 1);
    if (!st && routes) st = moe_cli_check_output("--routes", routes, pos[0], ins, 2);
    if (!st && out && routes && !strcmp(out, routes)) st = moe_fail(MOE_EUSAGE, "--out and --routes name the same file %s", out);
    if (!st) st = moe_cli_load_model(pos[0], &ol, &m);
    if (!st) st = moe_session_new(m, ctx > 0 ? ctx : n, &s);
    int vocab = m ? moe_model_get_info(m)->vocab_size : 0;
    if (!st && !(logits = malloc(sizeof(float) * (size_t)n * (size_t)vocab))) st = MOE_ENOMEM;
    if (!st && routes) {
        st = moe_atomic_open(&af_routes, routes);
        if (!st) {
            rl.f = af_routes.f;
            fprintf(rl.f, "{\"routes\": [");
            moe_session_set_route_hook(s, log_route, &rl);
        }
    }
    if (!st) {
        double t0 = moe_cli_seconds();
        if (stepwise)
            for (int i = 0; i < n && !st; i++) st = moe_session_eval(s, tokens + i, 1, logits + (size_t)i * vocab, 0);
        else
            st = moe_session_eval(s, tokens, n, logits, 1);
        if (!st && ol.stats) moe_cli_print_stats(stderr, m, stepwise ? "stepwise" : "prefill", (uint64_t)n, moe_cli_seconds() - t0);
    }
    if (!st && routes) {
        fprintf(rl.f, "\n]");
        close_doc(rl.f, rl.nonfinite, "routing weights and scores");
        st = moe_atomic_commit(&af_routes);
    }
    if (!st) {
        if (out) {
            st = moe_atomic_open(&af_out, out);
            if (!st) {
                bad_logits = write_logits(af_out.f, logits, n, vocab);
                st = moe_atomic_commit(&af_out);
            }
        } else {
            bad_logits = write_logits(stdout, logits, n, vocab);
            st = moe_cli_stdout_check();
        }
    }
    if (!st && (bad_logits || rl.nonfinite))
        st = moe_fail(MOE_EINPUT, "%s: %zu logits and %zu routing values are NaN or infinite (written as null): the "
                      "weights are not finite", pos[0], bad_logits, rl.nonfinite);
    int rc = st ? moe_cli_error(st) : 0;
    if (af_routes.f) moe_atomic_abort(&af_routes);
    free(logits);
    free(tokens);
    moe_session_free(s);
    moe_model_free(m);
    return rc;
}
