/* offload.c - shared expert-store options and the statistics report (see offload.h). */
#include "cli/offload.h"
#include "cli/ep.h"
#include <string.h>
#include "core/error.h"
#include <time.h>

moe_status moe_cli_load_model(const char *dir, const moe_cli_offload *o, moe_model **out) {
    moe_load_options lo = {o->budget, o->cache, o->prefetch, o->no_predict, o->direct_io, o->io_threads, o->no_mmap,
                           o->predictor};
    if (o->no_predict && !o->prefetch) return moe_fail(MOE_EUSAGE, "--no-predict needs --prefetch");
    if (o->predictor && (!o->prefetch || o->no_predict))
        return moe_fail(MOE_EUSAGE, "--predictor needs --prefetch (and no --no-predict)");
    moe_route_options ro = {0};
    const struct { const char *flag, *text; double *dest; } nums[] = {
        {"--expert-top-p", o->top_p, &ro.top_p}, {"--skip-threshold", o->skip, &ro.skip_threshold}, {"--capacity", o->capacity, &ro.capacity}};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        if (nums[i].text && moe_parse_double(nums[i].text, nums[i].dest))
            return moe_fail(MOE_EUSAGE, "%s: '%s' is not a number", nums[i].flag, nums[i].text);
    /* "given" must stay distinguishable from "off": a given 0 is checked like any value */
    if (o->top_p && ro.top_p == 0) return moe_fail(MOE_EUSAGE, "--expert-top-p 0 is outside (0, 1]");
    if (o->capacity && ro.capacity == 0) return moe_fail(MOE_EUSAGE, "--capacity 0 is outside (0, 1e+06]");
    if (o->reroute && !o->capacity) return moe_fail(MOE_EUSAGE, "--reroute needs --capacity");
    ro.layer_k = o->layer_k;
    ro.disable = o->disable;
    ro.force = o->force;
    ro.reroute = o->reroute;
    MOE_TRY(moe_model_load_opts(dir, &lo, out));
    moe_status st = moe_model_set_routing(*out, &ro);
    if (st == MOE_OK) st = moe_cli_ep_attach(*out, o->ep_placement);   /* under mpirun: keep only this rank's experts */
    if (st != MOE_OK) { moe_model_free(*out); *out = NULL; }
    return st;
}

double moe_cli_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* VmRSS and VmHWM of this process in bytes (0 if unreadable). */
static void read_rss(uint64_t *rss, uint64_t *hwm) {
    *rss = *hwm = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) *rss = kb * 1024;
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) *hwm = kb * 1024;
    }
    fclose(f);
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0.0; }
static double per(double a, uint64_t b) { return b ? a / (double)b : 0.0; }

void moe_cli_print_stats(FILE *f, const moe_model *m, const char *phase, uint64_t tokens, double seconds) {
    moe_offload_stats s;
    moe_model_offload_stats(m, &s);
    uint64_t rss, hwm;
    read_rss(&rss, &hwm);
    const double MiB = 1024.0 * 1024.0;
    fprintf(f, "stats %s: %llu tokens in %.3f s (%.2f tok/s)\n", phase, (unsigned long long)tokens, seconds,
            seconds > 0 ? (double)tokens / seconds : 0.0);
    if (s.offloaded) {
        fprintf(f, "stats %s: cache hit rate %.1f%% (%llu hits, %llu in flight, %llu misses of %llu lookups)\n", phase,
                pct(s.hits, s.lookups), (unsigned long long)s.hits, (unsigned long long)s.inflight,
                (unsigned long long)s.misses, (unsigned long long)s.lookups);
        if (s.needed_predicted)
            fprintf(f, "stats %s: prefetch accuracy %.1f%% (%llu of %llu needed experts predicted; %llu predictions, "
                       "%llu wasted reads)\n", phase, pct(s.predicted_used, s.needed_predicted),
                    (unsigned long long)s.predicted_used, (unsigned long long)s.needed_predicted,
                    (unsigned long long)s.predicted, (unsigned long long)s.wasted_reads);
        else
            fprintf(f, "stats %s: prefetch accuracy n/a (no predictions)\n", phase);
        fprintf(f, "stats %s: read %.3f MiB per token (%llu reads, %.1f MiB), I/O stall %.3f ms per token\n", phase,
                per((double)s.bytes_read / MiB, tokens), (unsigned long long)s.reads, (double)s.bytes_read / MiB,
                per(s.stall_ms, tokens));
        fprintf(f, "stats %s: expert memory %d slots x %.2f MiB = %.1f MiB for %.1f MiB of experts on disk\n", phase,
                s.n_slots, (double)s.slot_bytes / MiB, s.n_slots * (double)s.slot_bytes / MiB,
                (double)s.expert_bytes / MiB);
    } else {
        fprintf(f, "stats %s: all experts resident (no --mem-budget)\n", phase);
    }
    uint64_t lt, asg;
    moe_model_route_counts(m, &lt, &asg);
    if (lt) fprintf(f, "stats %s: routed experts per token %.3f (%llu executed over %llu MoE layer-tokens)\n", phase,
                    (double)asg / (double)lt, (unsigned long long)asg, (unsigned long long)lt);
    fprintf(f, "stats %s: resident memory %.1f MiB, peak %.1f MiB\n", phase, (double)rss / MiB, (double)hwm / MiB);
    moe_cli_ep_print_stats(f, phase);
    fprintf(f, "stats-json {\"phase\": \"%s\", \"tokens\": %llu, \"seconds\": %.6f, \"offloaded\": %d, \"lookups\": %llu, "
               "\"hits\": %llu, \"inflight\": %llu, \"misses\": %llu, \"hit_rate\": %.6f, \"predicted\": %llu, "
               "\"predicted_used\": %llu, \"needed_predicted\": %llu, \"prefetch_accuracy\": %.6f, \"reads\": %llu, "
               "\"bytes_read\": %llu, \"bytes_per_token\": %.1f, \"wasted_reads\": %llu, \"stall_ms\": %.3f, "
               "\"stall_ms_per_token\": %.4f, \"n_slots\": %d, \"slot_bytes\": %llu, \"expert_bytes\": %llu, "
               "\"vm_rss\": %llu, \"vm_hwm\": %llu, \"experts_per_token\": %.6f}\n",
            phase, (unsigned long long)tokens, seconds, s.offloaded, (unsigned long long)s.lookups,
            (unsigned long long)s.hits, (unsigned long long)s.inflight, (unsigned long long)s.misses,
            pct(s.hits, s.lookups) / 100, (unsigned long long)s.predicted, (unsigned long long)s.predicted_used,
            (unsigned long long)s.needed_predicted, pct(s.predicted_used, s.needed_predicted) / 100,
            (unsigned long long)s.reads, (unsigned long long)s.bytes_read, per((double)s.bytes_read, tokens),
            (unsigned long long)s.wasted_reads, s.stall_ms, per(s.stall_ms, tokens), s.n_slots,
            (unsigned long long)s.slot_bytes, (unsigned long long)s.expert_bytes, (unsigned long long)rss,
            (unsigned long long)hwm, lt ? (double)asg / (double)lt : 0.0);
    fflush(f);
}
