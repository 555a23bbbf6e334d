/* offload.h - the command-line face of the expert store: the options every model-running command
 * shares (--mem-budget, --cache, --prefetch, --predictor, --direct-io, --io-threads, --stats,
 * --no-mmap) and the one function
 * that reports the store's counters, so that logits, generate, eval and run print the same thing. */
#ifndef MOE_CLI_OFFLOAD_H
#define MOE_CLI_OFFLOAD_H
#include <stdint.h>
#include <stdio.h>
#include "cli/args.h"
#include "moe.h"

typedef struct moe_cli_offload {
    int64_t budget;
    const char *cache, *predictor;
    int prefetch, no_predict, direct_io, io_threads, stats, no_mmap;
} moe_cli_offload;

/* Entries for a command's option table (before its {0} terminator). */
#define MOE_CLI_OFFLOAD_OPTS(o)                                                                            \
    {"mem-budget", 0, ARG_BYTES, &(o)->budget, "BYTES",                                                    \
     "keep routed experts on disk, at most BYTES of them in memory (e.g. 512M)", 0, 0},                    \
    {"cache", 0, ARG_STR, &(o)->cache, "POLICY", "expert cache policy: lru (default), lfu, activation, fate, none", 0, 0}, \
    {"prefetch", 0, ARG_FLAG, &(o)->prefetch, NULL, "read experts ahead: this layer's, and the next layer's as predicted", 0, 0}, \
    {"no-predict", 0, ARG_FLAG, &(o)->no_predict, NULL, "with --prefetch: read only the experts a layer chose, no prediction", 0, 0}, \
    {"predictor", 0, ARG_STR, &(o)->predictor, "FILE", "with --prefetch: predict with a predictor fitted by moe fit-predictor", 0, 0}, \
    {"direct-io", 0, ARG_FLAG, &(o)->direct_io, NULL, "read experts with O_DIRECT (bypass the page cache)", 0, 0}, \
    {"io-threads", 0, ARG_INT, &(o)->io_threads, "N", "expert reader threads with --prefetch (default 2)", 1, 64}, \
    {"stats", 0, ARG_FLAG, &(o)->stats, NULL, "print expert cache, prefetch and I/O statistics to stderr", 0, 0}, \
    {"no-mmap", 0, ARG_FLAG, &(o)->no_mmap, NULL, "read the weights into (huge-page) memory instead of mapping them: slower load, faster decode", 0, 0}

/* Load MODEL with the options given (a plain load when there is no --mem-budget). */
moe_status moe_cli_load_model(const char *dir, const moe_cli_offload *o, moe_model **out);

/* Print the store's counters for a phase ("prefill", "decode", ...) of `tokens` tokens that took
 * `seconds`, as readable lines and one "stats-json {...}" line. */
void moe_cli_print_stats(FILE *f, const moe_model *m, const char *phase, uint64_t tokens, double seconds);

/* Monotonic seconds, for phases. */
double moe_cli_seconds(void);
#endif
