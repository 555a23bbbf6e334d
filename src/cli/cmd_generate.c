/* cmd_generate.c - `moe generate MODEL --tokens IDS -n N`: greedy continuation, token ids out. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>

int cmd_generate(int argc, char **argv) {
    const char *tokens_s = NULL;
    int n_new = 16, ctx = 0;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"tokens", 0, ARG_STR, &tokens_s, "IDS", "comma-separated prompt token ids (required)", 0, 0},
        {"n-predict", 'n', ARG_INT, &n_new, "N", "tokens to generate (default 16)", 0, 1 << 24},
        {"ctx", 'c', ARG_INT, &ctx, "N", "context size (default: prompt + N)", 1, 1 << 24},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        MOE_CLI_ROUTE_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {"generate", "MODEL --tokens IDS [-n N] [options]",
                               "Continue a token sequence greedily (argmax) and print the new token ids, comma-separated.",
                               "With --stats, the prompt (prefill) and the generated tokens after the first (decode,\n"
                               "one token per step) are reported separately; decode tok/s is the decode rate.",
                               opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!tokens_s) { fprintf(stderr, "moe generate: --tokens is required (see moe generate --help)\n"); return 1; }
    int32_t *tokens;
    int n = moe_parse_int_list("generate", "--tokens", tokens_s, &tokens);
    if (n < 0) return 1;
    long long need = (long long)n + (n_new > 0 ? n_new - 1 : 0); /* the last new token is never fed back */
    if (ctx > 0 && ctx < need) {
        fprintf(stderr, "moe generate: --ctx %d is too small for %d prompt tokens and %d new ones (needs %lld)\n", ctx, n,
                n_new, need);
        free(tokens);
        return 1;
    }
    moe_model *m = NULL;
    moe_session *s = NULL;
    float *logits = NULL;
    moe_status st = moe_cli_load_model(pos[0], &ol, &m);
    if (!st) st = moe_session_new(m, ctx > 0 ? ctx : n + n_new, &s);
    int vocab = m ? moe_model_get_info(m)->vocab_size : 0;
    if (!st && !(logits = malloc(sizeof(float) * (size_t)vocab))) st = MOE_ENOMEM;
    double t0 = moe_cli_seconds(), t1 = 0;
    if (!st) st = moe_session_eval(s, tokens, n, logits, 0);
    if (!st && ol.stats) {
        moe_cli_print_stats(stderr, m, "prefill", (uint64_t)n, moe_cli_seconds() - t0);
        moe_model_offload_stats_reset(m);
    }
    t1 = moe_cli_seconds();
    for (int i = 0; i < n_new && !st; i++) {
        int32_t best = 0;
        for (int v = 1; v < vocab; v++)
            if (logits[v] > logits[best]) best = v;
        printf("%s%d", i ? "," : "", best);
        if ((st = moe_cli_stdout_check()) != MOE_OK) break;
        if (i + 1 < n_new) st = moe_session_eval(s, &best, 1, logits, 0);
    }
    if (!st && n_new) printf("\n");
    if (!st && ol.stats && n_new > 1) moe_cli_print_stats(stderr, m, "decode", (uint64_t)(n_new - 1), moe_cli_seconds() - t1);
    int rc = st ? moe_cli_error(st) : 0;
    free(logits);
    free(tokens);
    moe_session_free(s);
    moe_model_free(m);
    return rc;
}
