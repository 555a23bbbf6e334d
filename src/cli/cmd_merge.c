/* cmd_merge.c - `moe merge MODEL OUT --method msmoe|hcsmoe --groups N --calib FILE`: merge every MoE
 * layer's experts into N (src/tools/merge.h). */
#include "cli/args.h"
#include "cli/calib.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "core/error.h"
#include "tools/expert_rewrite.h"
#include "tools/merge.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_merge(int argc, char **argv) {
    const char *method = NULL, *calib_path = NULL, *calib_ids = NULL, *tok_path = NULL, *layout = "compact";
    int groups = 0, calib_tokens = 8192, merge_tokens = 1024, ctx = 512;
    double ratio = 0;
    int64_t shard = 0;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"method", 0, ARG_STR, &method, "NAME", "msmoe or hcsmoe (required)", 0, 0},
        {"groups", 0, ARG_INT, &groups, "N", "merged experts per MoE layer", 1, 65536},
        {"ratio", 0, ARG_FLOAT, &ratio, "R", "share of each layer's experts merged away, 0 < R < 1 (instead of --groups)", 0, 1},
        {"calib", 0, ARG_STR, &calib_path, "FILE", "calibration text, tokenized with MODEL's tokenizer", 0, 0},
        {"calib-ids", 0, ARG_STR, &calib_ids, "FILE", "calibration token ids instead (whitespace or comma separated)", 0, 0},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json for --calib (default: the one in MODEL)", 0, 0},
        {"calib-tokens", 0, ARG_INT, &calib_tokens, "N", "use at most N calibration tokens (default 8192)", 1, 1 << 30},
        {"merge-tokens", 0, ARG_INT, &merge_tokens, "N", "tokens per layer whose activations decide groups and alignment "
                                                           "(default 1024)", 2, 1 << 20},
        {"ctx", 'c', ARG_INT, &ctx, "N", "calibration window (default 512)", 1, 1 << 20},
        {"layout", 0, ARG_STR, &layout, "NAME", "compact (default: N experts per layer and a slot map) or hf (E copies, "
                                                 "loadable by transformers)", 0, 0},
        {"shard-size", 0, ARG_BYTES, &shard, "BYTES", "largest output file; more tensors go to shards (default 4G)", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        {0},
    };
    const moe_cmd_spec spec = {
        "merge", "MODEL OUT --method msmoe|hcsmoe (--groups N | --ratio R) --calib FILE [options]",
        "Merge every MoE layer's experts into N; the router sends each expert's traffic to its group.",
        "msmoe = M-SMoE: the N most frequently selected experts lead the groups, the others join the one\n"
        "with the most similar router scores, neurons are aligned to the leader with the Hungarian\n"
        "algorithm on activation correlation, and weights are averaged by selection frequency.\n"
        "hcsmoe = HC-SMoE: hierarchical clustering (average linkage) of the experts' mean outputs, then\n"
        "frequency-weighted averages. --layout compact stores N experts per layer (moe loads it; the\n"
        "router keeps all its rows, so transformers refuses it); --layout hf stores every expert as a copy\n"
        "of its merged expert, which transformers loads too. The groups go to OUT/moe_compression.json.\n"
        "See docs/COMPRESSION.md.",
        opts, 2, 2};
    const char *pos[2];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    moe_merge_method mt;
    if (!method) { fprintf(stderr, "moe merge: --method is required (msmoe or hcsmoe)\n"); return 1; }
    if (!strcmp(method, "msmoe")) mt = MOE_MERGE_MSMOE;
    else if (!strcmp(method, "hcsmoe")) mt = MOE_MERGE_HCSMOE;
    else { fprintf(stderr, "moe merge: unknown --method '%.20s' (msmoe or hcsmoe)\n", method); return 1; }
    if (!groups == !(ratio > 0)) { fprintf(stderr, "moe merge: give exactly one of --groups and --ratio\n"); return 1; }
    if (ratio >= 1) { fprintf(stderr, "moe merge: --ratio must be below 1\n"); return 1; }
    if (!calib_path == !calib_ids) { fprintf(stderr, "moe merge: give exactly one of --calib and --calib-ids\n"); return 1; }
    if (strcmp(layout, "compact") && strcmp(layout, "hf")) {
        fprintf(stderr, "moe merge: unknown --layout '%.20s' (compact or hf)\n", layout);
        return 1;
    }
    moe_model *m = NULL;
    int32_t *ids = NULL;
    int n = 0;
    moe_calib cal = {0};
    moe_status st = moe_cli_load_model(pos[0], &ol, &m);
    const moe_model_info *I = m ? moe_model_get_info(m) : NULL;
    if (!st && !I->n_experts) st = moe_fail(MOE_EUSAGE, "%s: the model has no routed experts", pos[0]);
    if (!st && ratio > 0) {
        groups = I->n_experts - (int)lround(ratio * I->n_experts);
        if (groups < 1) groups = 1;
    }
    if (!st) st = moe_merge_check(m, groups);
    if (!st) st = moe_expert_out_dir(m, pos[1]);
    if (!st) st = moe_cli_calib_tokens(tok_path ? tok_path : pos[0], calib_path, calib_ids, calib_tokens, I->vocab_size, &ids, &n);
    if (!st) {
        moe_calib_options co = {ctx, 0, merge_tokens < n ? merge_tokens : n, 0, moe_cli_calib_progress, "merge"};
        st = moe_calib_run(m, ids, n, &co, &cal);
    }
    if (!st) {
        moe_merge_options mo = {mt, groups, !strcmp(layout, "hf"), shard, stderr};
        st = moe_merge_model(m, &cal, pos[1], &mo);
    }
    if (!st) printf("wrote %s: %d experts merged into %d per MoE layer (%s, %s layout, %d calibration tokens)\n", pos[1],
                    I->n_experts, groups, method, layout, n);
    int rc = st ? moe_cli_error(st) : 0;
    moe_calib_free(&cal);
    free(ids);
    moe_model_free(m);
    return rc;
}
