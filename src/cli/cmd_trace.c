/* cmd_trace.c - `moe trace MODEL --text FILE --out DIR`: record which experts every MoE layer chooses
 * for every token, with their weights (DIR/trace.bin, src/tools/trace.h) and export it as CSV. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "cli/progress.h"
#include "cli/token_file.h"
#include "core/error.h"
#include "tools/trace_record.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void progress(void *user, int done, int total) {
    int tty = *(int *)user;
    if (!tty && done < total) return;
    fprintf(stderr, "%strace ", tty ? "\r" : "");
    moe_cli_bar(stderr, done, total, 30);
    fprintf(stderr, " %d/%d tokens", done, total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* Create dir if needed; refuse anything that is not a writable folder. */
static moe_status make_out_dir(const char *dir) {
    struct stat sb;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return moe_fail(MOE_EIO, "%s: cannot create folder: %s", dir, strerror(errno));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return moe_fail(MOE_EUSAGE, "%s: not a folder", dir);
    if (access(dir, W_OK) != 0) return moe_fail(MOE_EIO, "%s: folder is not writable", dir);
    return MOE_OK;
}

int cmd_trace(int argc, char **argv) {
    const char *tokens_path = NULL, *text_path = NULL, *tok_path = NULL, *out = NULL;
    int ctx = 512, max_tokens = 0, no_csv = 0;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"text", 0, ARG_STR, &text_path, "FILE", "UTF-8 text, tokenized with the model's tokenizer.json", 0, 0},
        {"tokens-file", 0, ARG_STR, &tokens_path, "FILE", "token ids instead, whitespace or comma separated", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --text and token texts (default: MODEL's)", 0, 0},
        {"out", 'o', ARG_STR, &out, "DIR", "output folder (created if missing; required)", 0, 0},
        {"ctx", 'c', ARG_INT, &ctx, "N", "tokens per window; each window is one sequence (default 512)", 1, 1 << 20},
        {"max-tokens", 0, ARG_INT, &max_tokens, "N", "trace only the first N tokens", 1, 2147483647},
        {"no-csv", 0, ARG_FLAG, &no_csv, NULL, "write only trace.bin, not the CSV export", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        MOE_CLI_ROUTE_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {
        "trace", "MODEL (--text FILE | --tokens-file FILE) --out DIR [options]",
        "Record the experts and combine weights every MoE layer chooses for every token.",
        "Writes DIR/trace.bin (compact binary: per token and MoE layer the chosen experts, their weights\n"
        "and the entropy of the router's scores; format in docs/INSPECT.md) and, unless --no-csv, the CSV\n"
        "export DIR/routes.csv, DIR/entropy.csv and DIR/tokens.csv. `moe stats DIR` turns a trace into\n"
        "load, entropy, co-activation and transition statistics, heatmaps and an HTML report.",
        opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!tokens_path == !text_path) {
        fprintf(stderr, "moe trace: give exactly one of --text and --tokens-file (see moe trace --help)\n");
        return 1;
    }
    if (!out) { fprintf(stderr, "moe trace: --out DIR is required (see moe trace --help)\n"); return 1; }
    int32_t *ids = NULL;
    int n = 0, tty = isatty(2);
    moe_model *m = NULL;
    moe_tokenizer *tok = NULL;
    moe_trace tr = {0};
    moe_status st = text_path ? moe_cli_tokenize_file(tok_path ? tok_path : pos[0], text_path, max_tokens, &ids, &n)
                              : moe_cli_read_token_file(tokens_path, &ids, &n);
    const char *src = text_path ? text_path : tokens_path;
    if (!st && max_tokens && n > max_tokens) n = max_tokens;
    if (!st && n < 1) st = moe_fail(MOE_EINPUT, "%s: no tokens", src);
    if (!st) st = moe_cli_load_model(pos[0], &ol, &m);
    if (!st) st = moe_cli_check_vocab(src, ids, n, moe_model_get_info(m)->vocab_size);
    if (!st) st = make_out_dir(out);
    /* token texts for the report: from the tokenizer if there is one (optional with --tokens-file) */
    if (!st && moe_tokenizer_load(tok_path ? tok_path : pos[0], &tok) != MOE_OK) {
        if (text_path) st = moe_fail(MOE_EINPUT, "%s: %s", tok_path ? tok_path : pos[0], moe_last_error());
        tok = NULL;
    }
    char path[4096];
    if (!st && (size_t)snprintf(path, sizeof path, "%s/trace.bin", out) >= sizeof path) st = moe_fail(MOE_EUSAGE, "%s: path too long", out);
    double t0 = moe_cli_seconds();
    if (!st) {
        moe_trace_options o = {ctx, tok, pos[0], progress, &tty};
        st = moe_trace_record(m, ids, n, &o, path);
    }
    if (!st && !no_csv) st = moe_trace_read(path, &tr);
    if (!st && !no_csv) st = moe_trace_write_csv(&tr, out);
    if (!st) {
        const moe_model_info *I = moe_model_get_info(m);
        printf("wrote %s: %d tokens, %d MoE layers, %d experts (%.1f s)%s\n", path, n, I->n_moe_layers, I->n_experts,
               moe_cli_seconds() - t0, no_csv ? "" : "; CSV: routes.csv, entropy.csv, tokens.csv");
        if (ol.stats) moe_cli_print_stats(stderr, m, "trace", (uint64_t)n, moe_cli_seconds() - t0);
    }
    int rc = st ? moe_cli_error(st) : 0;
    moe_trace_free(&tr);
    moe_tokenizer_free(tok);
    free(ids);
    moe_model_free(m);
    return rc;
}
