/* cmd_quantize.c - `moe quantize MODEL OUT --type q8_0|q4|mixed`: a block-quantized copy of a model
 * folder that every command loads like the original (see src/tools/quantize.h and docs/OFFLOAD.md). */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/outputs.h"
#include "cli/token_file.h"
#include "core/error.h"
#include "core/quant.h"
#include "tools/quantize.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct calib { double *freq; int n_experts; } calib;

static void count_route(void *user, const moe_routing *r) {
    calib *c = user;
    for (int a = 0; a < r->n_tokens * r->top_k; a++) c->freq[(size_t)r->layer * c->n_experts + r->expert[a]] += 1.0;
}

/* Run the calibration tokens through the model in windows of ctx and count each expert's tokens. */
static moe_status calibrate(moe_model *m, const int32_t *ids, int n, int ctx, double *freq) {
    const moe_model_info *I = moe_model_get_info(m);
    calib c = {freq, I->n_experts};
    moe_session *s;
    MOE_TRY(moe_session_new(m, ctx, &s));
    moe_session_set_route_hook(s, count_route, &c);
    moe_status st = MOE_OK;
    for (int i = 0; i < n && st == MOE_OK; i += ctx) {
        moe_session_reset(s);
        st = moe_session_eval(s, ids + i, n - i < ctx ? n - i : ctx, NULL, 0);
        if (isatty(2)) fprintf(stderr, "\rquantize: calibrating %d/%d tokens", i + (n - i < ctx ? n - i : ctx), n);
    }
    fprintf(stderr, "%squantize: calibrated on %d tokens\n", isatty(2) ? "\r" : "", n);
    moe_session_free(s);
    return st;
}

int cmd_quantize(int argc, char **argv) {
    const char *type = NULL, *calib_path = NULL, *calib_ids = NULL, *tok_path = NULL;
    int64_t budget = 0;
    int calib_tokens = 8192, ctx = 512;
    const moe_opt opts[] = {
        {"type", 0, ARG_STR, &type, "TYPE", "q8_0, q4 or mixed (required)", 0, 0},
        {"budget", 0, ARG_BYTES, &budget, "BYTES", "mixed: most bytes of tensor data in the output (required)", 0, 0},
        {"calib", 0, ARG_STR, &calib_path, "FILE", "mixed: calibration text (UTF-8, tokenized with MODEL's tokenizer)", 0, 0},
        {"calib-ids", 0, ARG_STR, &calib_ids, "FILE", "mixed: calibration token ids instead (whitespace/comma separated)", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --calib (default: the one in MODEL)", 0, 0},
        {"calib-tokens", 0, ARG_INT, &calib_tokens, "N", "use at most N calibration tokens (default 8192)", 1, 1 << 30},
        {"ctx", 'c', ARG_INT, &ctx, "N", "calibration window (default 512)", 2, 1 << 20},
        {0},
    };
    const moe_cmd_spec spec = {
        "quantize", "MODEL OUT --type q8_0|q4|mixed [--budget BYTES] [--calib FILE]",
        "Write a block-quantized copy of a model folder to OUT; every command loads it like the original.",
        "q8_0: 8-bit weights in blocks of 32 with an f16 scale (8.5 bits/weight). q4: 4-bit weights in blocks\n"
        "of 32 with an f16 scale and minimum, fitted by least squares (5 bits/weight). mixed: each routed\n"
        "expert q4 or q8_0 by importance (activation frequency on the calibration tokens times quantization\n"
        "error) under --budget; other matrices q8_0. Embeddings, LM head, routers and norms are kept as they\n"
        "are. Experts are laid out one after another (one read each for --mem-budget).",
        opts, 2, 2};
    const char *pos[2];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!type) { fprintf(stderr, "moe quantize: --type is required (see moe quantize --help)\n"); return 1; }
    int mixed = !strcmp(type, "mixed"), qt = mixed ? MOE_QUANT_MIXED : moe_quant_type_from_name(type);
    if (!mixed && qt < 0) { fprintf(stderr, "moe quantize: unknown --type '%.20s' (q8_0, q4 or mixed)\n", type); return 1; }
    if (qt == MOE_QUANT_MIXED && budget <= 0) { fprintf(stderr, "moe quantize: --type mixed needs --budget BYTES\n"); return 1; }
    if (calib_path && calib_ids) { fprintf(stderr, "moe quantize: give --calib or --calib-ids, not both\n"); return 1; }
    if (qt != MOE_QUANT_MIXED && (budget || calib_path || calib_ids)) {
        fprintf(stderr, "moe quantize: --budget and --calib apply to --type mixed only\n");
        return 1;
    }
    moe_model *m = NULL;
    double *freq = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    /* the output folder before the work: not the model's folder, nothing in it a FIFO or a link to an input */
    static const char *const outs[] = {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                                       "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                                       "tokenizer.model"};
    const char *ins[] = {calib_path, calib_ids, tok_path};
    moe_status st = moe_cli_check_output_dir("OUT", pos[1], pos[0], ins, 3, outs, (int)(sizeof outs / sizeof *outs));
    if (!st) st = moe_model_load(pos[0], &m);
    if (!st && qt == MOE_QUANT_MIXED) {
        const moe_model_info *I = moe_model_get_info(m);
        if (!I->n_experts) st = moe_fail(MOE_EUSAGE, "%s: --type mixed needs a model with routed experts", pos[0]);
        else if (calib_path || calib_ids) {
            freq = calloc((size_t)I->n_layers * I->n_experts, sizeof *freq);
            if (!freq) st = moe_fail(MOE_ENOMEM, "out of memory");
            if (!st) st = calib_path ? moe_cli_tokenize_file(tok_path ? tok_path : pos[0], calib_path, calib_tokens, &ids, &n_ids)
                                     : moe_cli_read_token_file(calib_ids, &ids, &n_ids);
            const char *src = calib_path ? calib_path : calib_ids;
            if (!st) st = moe_cli_check_vocab(src, ids, n_ids, I->vocab_size);
            if (!st) st = calibrate(m, ids, n_ids < calib_tokens ? n_ids : calib_tokens, ctx, freq);
        } else {
            fprintf(stderr, "moe quantize: warning: no --calib: every expert counts as equally frequent\n");
        }
    }
    if (!st) {
        moe_quantize_options o = {qt, budget, freq, stderr};
        st = moe_quantize_model(m, pos[1], &o);
    }
    int rc = st ? moe_cli_error(st) : 0;
    free(freq);
    free(ids);
    moe_model_free(m);
    return rc;
}
