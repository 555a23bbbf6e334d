/* cmd_stats.c - `moe stats DIR`: statistics, heatmaps and an HTML report of a routing trace written by
 * `moe trace` (src/tools/trace_stats.h). */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/outputs.h"
#include "core/error.h"
#include "tools/trace_stats.h"
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int cmd_stats(int argc, char **argv) {
    const char *out = NULL;
    int csv = 0;
    const moe_opt opts[] = {
        {"out", 'o', ARG_STR, &out, "DIR", "where to write the results (default: DIR itself)", 0, 0},
        {"csv", 0, ARG_FLAG, &csv, NULL, "also (re)write the CSV export of the trace", 0, 0},
        {0},
    };
    const moe_cmd_spec spec = {
        "stats", "DIR [--out DIR2]",
        "Expert load, routing entropy, co-activation, transitions and preferred tokens of a trace.",
        "DIR is a folder written by `moe trace` (or a trace.bin file). Writes stats.json (every number),\n"
        "load.png (layers x experts), coact_L<l>.png and trans_L<l>.png per MoE layer (up to 512 experts),\n"
        "and report.html, one self-contained page with all of them. Prints a summary per layer.",
        opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    char path[4096], dir[4096];
    struct stat sb;
    int is_dir = stat(pos[0], &sb) == 0 && S_ISDIR(sb.st_mode);
    if (is_dir) snprintf(path, sizeof path, "%s/trace.bin", pos[0]);
    else snprintf(path, sizeof path, "%s", pos[0]);
    if (out) snprintf(dir, sizeof dir, "%s", out);
    else if (is_dir) snprintf(dir, sizeof dir, "%s", pos[0]);
    else {
        snprintf(dir, sizeof dir, "%s", pos[0]);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    moe_trace t;
    moe_trace_stats s = {0};
    moe_status st = moe_trace_read(path, &t);
    if (!st && out && mkdir(out, 0755) != 0 && (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        st = moe_fail(MOE_EIO, "%s: cannot create the output folder", out);
    if (!st) {   /* every output before the work: none a FIFO, a device or the trace itself */
        static const char *const outs[] = {"stats.json", "report.html", "load.png", "routes.csv",
                                           "entropy.csv", "tokens.csv"};
        const char *ins[] = {path};
        st = moe_cli_check_output_dir("--out", dir, NULL, ins, 1, outs, (int)(sizeof outs / sizeof *outs));
    }
    if (!st) st = moe_trace_stats_compute(&t, &s);
    if (!st) st = moe_trace_stats_write(&t, &s, dir);
    if (!st && csv) st = moe_trace_write_csv(&t, dir);
    if (!st) {
        printf("%s: %llu tokens, %u MoE layers, %u experts, %.3f experts per token\n", t.model, (unsigned long long)t.n_tokens,
               t.n_moe, t.n_experts, s.experts_per_token);
        printf("%6s %14s %14s %10s %8s %8s\n", "layer", "router H (nat)", "load H (nat)", "max/mean", "busiest", "unused");
        for (uint32_t l = 0; l < s.n_layers; l++) {
            const moe_stats_layer *L = &s.layers[l];
            uint64_t tot = 0, mx = 0;
            uint32_t bi = 0, unused = 0;
            for (uint32_t e = 0; e < s.E; e++) {
                tot += L->load[e];
                if (L->load[e] > mx) { mx = L->load[e]; bi = e; }
                unused += L->load[e] == 0;
            }
            printf("%6u %14.4f %14.4f %10.2f %8u %8u\n", L->layer, L->entropy_mean, L->load_entropy,
                   tot ? (double)mx * s.E / (double)tot : 0.0, bi, unused);
        }
        printf("wrote %s/stats.json, %s/load.png and %s/report.html\n", dir, dir, dir);
    }
    int rc = st ? moe_cli_error(st) : 0;
    moe_trace_stats_free(&s);
    moe_trace_free(&t);
    return rc;
}
