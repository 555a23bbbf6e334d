/* cmd_eval.c - `moe eval MODEL --tokens-file FILE [--ctx N]`: perplexity over a token sequence.
 * Sliding windows as in Hugging Face's perplexity guide: windows of ctx tokens start every stride
 * tokens; each token is scored once, by the first window that predicts it, so with stride < ctx every
 * token but those of the first window sees at least ctx - stride tokens of context. Windows are fed to
 * the model in chunks of 64 positions so that logits memory stays 64 x vocab floats.
 * Text (--text) is tokenized with the model's tokenizer.json, without BOS, as tokenizers' encode(text),
 * in verified parts (src/io/tokenize_stream.h): with --max-tokens, only as much of the file as those
 * tokens need is read. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "cli/progress.h"
#include "cli/token_file.h"
#include "core/error.h"
#include "io/json.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EVAL_CHUNK 64

/* -log softmax(row)[target], in double */
static double nll(const float *row, int vocab, int target) {
    double mx = row[0];
    for (int v = 1; v < vocab; v++) mx = row[v] > mx ? row[v] : mx;
    double s = 0;
    for (int v = 0; v < vocab; v++) s += exp((double)row[v] - mx);
    return log(s) + mx - (double)row[target];
}

static void progress(int done, int total, double sum, int scored, int tty) {
    if (!tty && done < total) return;
    fprintf(stderr, "\reval ");
    moe_cli_bar(stderr, done, total, 30);
    fprintf(stderr, " %d/%d tokens, perplexity %.4f", done, total, scored ? exp(sum / scored) : 0.0);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_eval(int argc, char **argv) {
    const char *tokens_path = NULL, *text_path = NULL, *tok_path = NULL;
    int ctx = 512, stride = 0, max_tokens = 0, json = 0;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"tokens-file", 0, ARG_STR, &tokens_path, "FILE", "token ids, whitespace or comma separated", 0, 0},
        {"text", 0, ARG_STR, &text_path, "FILE", "UTF-8 text, tokenized with the model's tokenizer.json", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --text (default: the one in MODEL)", 0, 0},
        {"ctx", 'c', ARG_INT, &ctx, "N", "window length (default 512)", 2, 1 << 20},
        {"stride", 0, ARG_INT, &stride, "N", "window start step (default ctx/2)", 1, 1 << 20},
        {"max-tokens", 0, ARG_INT, &max_tokens, "N", "evaluate only the first N tokens", 2, 2147483647},
        {"json", 0, ARG_FLAG, &json, NULL, "print the result as one JSON object", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        MOE_CLI_ROUTE_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {
        "eval", "MODEL (--tokens-file FILE | --text FILE) [--ctx N] [options]",
        "Report the perplexity of a model over a token sequence, with sliding windows.",
        "perplexity = exp(mean over scored tokens of -log p(token | preceding tokens in its window)).\n"
        "Each token is scored at most once; with stride < ctx every token after the first is scored\n"
        "(with stride = ctx, as in Hugging Face's guide, the first token of each window is not).",
        opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!tokens_path == !text_path) {
        fprintf(stderr, "moe eval: give exactly one of --tokens-file and --text (see moe eval --help)\n");
        return 1;
    }
    if (!stride) stride = ctx / 2 > 0 ? ctx / 2 : 1;
    if (stride > ctx) { fprintf(stderr, "moe eval: --stride %d is larger than --ctx %d\n", stride, ctx); return 1; }
    int32_t *ids = NULL;
    int n = 0;
    moe_model *m = NULL;
    moe_session *s = NULL;
    float *logits = NULL;
    moe_status st = text_path ? moe_cli_tokenize_file(tok_path ? tok_path : pos[0], text_path, max_tokens, &ids, &n)
                              : moe_cli_read_token_file(tokens_path, &ids, &n);
    const char *src = text_path ? text_path : tokens_path;
    if (!st && max_tokens && n > max_tokens) n = max_tokens;
    if (!st && n < 2) st = moe_fail(MOE_EINPUT, "%s: need at least 2 tokens, found %d", src, n);
    if (!st) st = moe_cli_load_model(pos[0], &ol, &m);
    const moe_model_info *I = m ? moe_model_get_info(m) : NULL;
    int vocab = I ? I->vocab_size : 0;
    if (!st) st = moe_cli_check_vocab(src, ids, n, vocab);
    if (!st && ctx > n) ctx = n;
    if (!st) st = moe_session_new(m, ctx, &s);
    if (!st && !(logits = malloc(sizeof(float) * (size_t)EVAL_CHUNK * (size_t)vocab))) st = moe_fail(MOE_ENOMEM, "out of memory");
    double sum = 0, t0 = moe_cli_seconds();
    int scored = 0, next_target = 1, tty = isatty(2), windows = 0;
    for (int b = 0; !st && next_target < n; b += stride) {
        int e = b + ctx < n ? b + ctx : n;
        moe_session_reset(s);
        for (int c0 = b; c0 < e && !st; c0 += EVAL_CHUNK) {
            int cn = e - c0 < EVAL_CHUNK ? e - c0 : EVAL_CHUNK;
            /* positions whose next token is still unscored need logits; earlier chunks only fill the cache */
            int need = c0 + cn >= next_target && c0 + 1 < e;
            st = moe_session_eval(s, ids + c0, cn, need ? logits : NULL, need);
            for (int i = c0; need && !st && i < c0 + cn; i++) {
                int target = i + 1;
                if (target < next_target || target >= e) continue;
                double x = nll(logits + (size_t)(i - c0) * vocab, vocab, ids[target]);
                if (!isfinite(x)) {   /* NaN or Inf logits: no perplexity to report */
                    st = moe_fail(MOE_EINPUT, "%s: the logits at token %d are NaN or infinite: the weights are not finite",
                                  pos[0], i);
                    break;
                }
                sum += x;
                scored++;
            }
        }
        windows++;
        if (!st) next_target = e;
        if (!st) progress(next_target, n, sum, scored, tty);
        if (e == n) break;
    }
    double secs = moe_cli_seconds() - t0;
    if (!st) {
        double ppl = exp(sum / scored);
        uint64_t lt, asg;   /* routed experts executed per MoE layer and token */
        moe_model_route_counts(m, &lt, &asg);
        double ept = lt ? (double)asg / (double)lt : 0.0;
        if (json) {   /* a mean loss above ~709 overflows exp: perplexity null, not "inf" */
            printf("{\"perplexity\": ");
            moe_json_put_num(stdout, "%.6f", ppl);
            printf(", \"nll\": %.6f, \"tokens\": %d, \"scored\": %d, \"ctx\": %d, \"stride\": %d, "
                   "\"windows\": %d, \"seconds\": %.3f, \"experts_per_token\": %.6f}\n", sum / scored, n, scored, ctx,
                   stride, windows, secs, ept);
        } else
            printf("perplexity %.4f over %d tokens (%d scored, ctx %d, stride %d, %d windows, %.1f s; %.3f routed experts "
                   "per token)\n", ppl, n, scored, ctx, stride, windows, secs, ept);
        if (ol.stats) moe_cli_print_stats(stderr, m, "eval", (uint64_t)n, secs);
    }
    int rc = st ? moe_cli_error(st) : 0;
    free(logits);
    free(ids);
    moe_session_free(s);
    moe_model_free(m);
    return rc;
}
