/* cmd_prune.c - `moe prune MODEL OUT --method freq|reap|task --keep N | --ratio R --calib FILE`: remove
 * the least important routed experts of every MoE layer with their router rows (src/tools/prune.h). */
#include "cli/args.h"
#include "cli/calib.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "core/error.h"
#include "tools/expert_rewrite.h"
#include "tools/prune.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_prune(int argc, char **argv) {
    const char *method = NULL, *calib_path = NULL, *calib_ids = NULL, *tok_path = NULL;
    int keep = 0, calib_tokens = 8192, ctx = 512;
    double ratio = 0, threshold = 0;
    int64_t shard = 0;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"method", 0, ARG_STR, &method, "NAME", "freq, reap or task (required)", 0, 0},
        {"keep", 0, ARG_INT, &keep, "N", "experts kept in every MoE layer", 1, 65536},
        {"ratio", 0, ARG_FLOAT, &ratio, "R", "share of each layer's experts removed, 0 < R < 1 (instead of --keep)", 0, 1},
        {"calib", 0, ARG_STR, &calib_path, "FILE", "calibration (or, for task, task) text, tokenized with MODEL's tokenizer", 0, 0},
        {"calib-ids", 0, ARG_STR, &calib_ids, "FILE", "calibration token ids instead (whitespace or comma separated)", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --calib (default: the one in MODEL)", 0, 0},
        {"calib-tokens", 0, ARG_INT, &calib_tokens, "N", "use at most N calibration tokens (default 8192)", 1, 1 << 30},
        {"ctx", 'c', ARG_INT, &ctx, "N", "calibration window (default 512)", 1, 1 << 20},
        {"threshold", 0, ARG_FLOAT, &threshold, "R", "task: count a choice only if it has this share of the chosen experts' "
                                                         "probability (default 0)", 0, 1},
        {"shard-size", 0, ARG_BYTES, &shard, "BYTES", "largest output file; more tensors go to shards (default 4G)", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {
        "prune", "MODEL OUT --method freq|reap|task (--keep N | --ratio R) --calib FILE [options]",
        "Remove the least important routed experts of every MoE layer, with their router rows.",
        "Importance on the calibration text: freq = tokens routed to the expert; reap = REAP, the\n"
        "router-weighted norm of the expert's output averaged over its tokens; task = the router\n"
        "probability of the expert summed over the tokens of a task text that choose it (PreMoe's expected\n"
        "selection score). OUT is a model folder every command (and transformers) loads. DeepSeek routers\n"
        "with expert groups keep the same number in every group. --keep equal to the expert count\n"
        "changes nothing. The choice and scores go to OUT/moe_compression.json. See docs/COMPRESSION.md.",
        opts, 2, 2};
    const char *pos[2];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    moe_prune_method mt;
    if (!method) { fprintf(stderr, "moe prune: --method is required (freq, reap or task)\n"); return 1; }
    if (!strcmp(method, "freq")) mt = MOE_PRUNE_FREQ;
    else if (!strcmp(method, "reap")) mt = MOE_PRUNE_REAP;
    else if (!strcmp(method, "task")) mt = MOE_PRUNE_TASK;
    else { fprintf(stderr, "moe prune: unknown --method '%.20s' (freq, reap or task)\n", method); return 1; }
    if (!keep == !(ratio > 0)) { fprintf(stderr, "moe prune: give exactly one of --keep and --ratio\n"); return 1; }
    if (ratio >= 1) { fprintf(stderr, "moe prune: --ratio must be below 1\n"); return 1; }
    if (!calib_path == !calib_ids) { fprintf(stderr, "moe prune: give exactly one of --calib and --calib-ids\n"); return 1; }
    if (threshold > 0 && mt != MOE_PRUNE_TASK) { fprintf(stderr, "moe prune: --threshold applies to --method task only\n"); return 1; }
    moe_model *m = NULL;
    int32_t *ids = NULL;
    int n = 0;
    moe_calib cal = {0};
    moe_status st = moe_cli_load_model(pos[0], &ol, &m);
    const moe_model_info *I = m ? moe_model_get_info(m) : NULL;
    if (!st && !I->n_experts) st = moe_fail(MOE_EUSAGE, "%s: the model has no routed experts", pos[0]);
    if (!st && ratio > 0) {
        int E = I->n_experts, want = E - (int)lround(ratio * E);
        keep = want;
        const moe_config *c = &m->cfg;
        if (c->group_limited && c->n_group > 1) {   /* stay a multiple of the groups */
            keep = (int)lround((double)want / c->n_group) * c->n_group;
            if (keep < c->n_group) keep = c->n_group;
        }
        if (keep < I->top_k) keep = I->top_k;
        if (keep != want)
            fprintf(stderr, "moe prune: --ratio %g keeps %d of %d experts per layer instead of %d (%s)\n", ratio, keep, E, want,
                    keep == I->top_k ? "at least the top-k" : "a multiple of the expert groups");
    }
    if (!st) st = moe_prune_check(m, keep);
    if (!st) st = moe_expert_out_dir(m, pos[1]);
    if (!st) st = moe_cli_calib_tokens(tok_path ? tok_path : pos[0], calib_path, calib_ids, calib_tokens, I->vocab_size, &ids, &n);
    if (!st) {
        moe_calib_options co = {ctx, mt == MOE_PRUNE_REAP, 0, threshold, moe_cli_calib_progress, "prune"};
        st = moe_calib_run(m, ids, n, &co, &cal);
    }
    if (!st) {
        moe_prune_options po = {mt, keep, threshold, shard, stderr};
        st = moe_prune_model(m, &cal, pos[1], &po);
    }
    if (!st) printf("wrote %s: %d of %d experts kept per MoE layer (%s, %d calibration tokens)\n", pos[1], keep, I->n_experts,
                    method, n);
    int rc = st ? moe_cli_error(st) : 0;
    moe_calib_free(&cal);
    free(ids);
    moe_model_free(m);
    return rc;
}
