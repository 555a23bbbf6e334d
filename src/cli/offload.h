/* offload.h - the command-line face of the expert store: the options every model-running command
 * shares (--mem-budget, --cache, --prefetch, --predictor, --direct-io, --io-threads, --stats,
 * --no-mmap) and the routing options (--top-p, --layer-k, ...), and the one function
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
    /* routing options (MOE_CLI_ROUTE_OPTS; moe_model_set_routing), kept as text to tell "not given" */
    const char *top_p, *layer_k, *skip, *capacity, *disable, *force;
    int reroute;
    const char *ep_placement;   /* under mpirun: a routing trace to balance the experts by (cli/ep.h) */
} moe_cli_offload;

/* Entries for the commands that run a model on text (run, generate, logits, eval, serve, trace, bench):
 * dynamic routing and steering, docs/DYNAMIC.md. --top-p is the same as --expert-top-p except in
 * `moe run`, where --top-p samples tokens (MOE_CLI_ROUTE_OPTS_SAMPLING leaves it out). */
#define MOE_CLI_ROUTE_OPTS(o)                                                                              \
    {"top-p", 0, ARG_STR, &(o)->top_p, "P", "routing: the same as --expert-top-p", 0, 0}, \
    MOE_CLI_ROUTE_OPTS_SAMPLING(o)
#define MOE_CLI_ROUTE_OPTS_SAMPLING(o)                                                                     \
    {"expert-top-p", 0, ARG_STR, &(o)->top_p, "P", "routing: per token the fewest experts whose probability reaches P (0 < P <= 1), at most the layer's k", 0, 0}, \
    {"layer-k", 0, ARG_STR, &(o)->layer_k, "L:K,...", "routing: K experts per token in layer L (L may be *); auto:K picks each layer's k from the weights (LExI), K on average", 0, 0}, \
    {"skip-threshold", 0, ARG_STR, &(o)->skip, "W", "routing: skip experts whose combine weight is below W (a token keeps its largest)", 0, 0}, \
    {"capacity", 0, ARG_STR, &(o)->capacity, "F", "routing: at most ceil(F * assignments / experts) tokens per expert per batch; the rest is dropped", 0, 0}, \
    {"reroute", 0, ARG_FLAG, &(o)->reroute, NULL, "with --capacity: send the overflow to the token's next expert with room instead", 0, 0}, \
    {"disable-experts", 0, ARG_STR, &(o)->disable, "L:E,...", "steering: the router never picks expert E of layer L (L may be *)", 0, 0}, \
    {"force-experts", 0, ARG_STR, &(o)->force, "L:E,...", "steering: run expert E of layer L for every token, weighted like its first expert", 0, 0}

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
    {"no-mmap", 0, ARG_FLAG, &(o)->no_mmap, NULL, "read the weights into (huge-page) memory instead of mapping them: slower load, faster decode", 0, 0}, \
    {"ep-placement", 0, ARG_STR, &(o)->ep_placement, "TRACE", "under mpirun -np R: place experts on ranks balanced by the loads of a moe trace folder (default: round robin)", 0, 0}

/* Load MODEL with the options given (a plain load when there is no --mem-budget). */
moe_status moe_cli_load_model(const char *dir, const moe_cli_offload *o, moe_model **out);

/* Print the store's counters for a phase ("prefill", "decode", ...) of `tokens` tokens that took
 * `seconds`, as readable lines and one "stats-json {...}" line. */
void moe_cli_print_stats(FILE *f, const moe_model *m, const char *phase, uint64_t tokens, double seconds);

/* Monotonic seconds, for phases. */
double moe_cli_seconds(void);
#endif
