/* trace_stats.h - statistics of a routing trace (the library side of `moe stats`).
 *
 * Per traced MoE layer, over the T tokens of the trace, with S(t) the set of experts token t uses:
 *   load[e]          number of tokens with e in S(t)
 *   weight_sum[e]    sum of the combine weights given to e
 *   entropy_mean     mean over tokens of the router-score entropy (nats; tokens without one skipped)
 *   load_entropy     entropy of the load shares load[e] / sum(load) (nats; log E when balanced)
 *   coact[i][j]      number of tokens with both i and j in S(t) (i != j); coact[i][i] = load[i]
 *   trans[i][j]      number of tokens with i in S(t) here and j in S'(t) at the next traced layer
 *   top tokens       per expert, the token ids routed to it most often: count, and share = count /
 *                    occurrences of the id in the trace; ties go to the lower id
 * Every number is written to stats.json; tests/hf/test_trace.py recomputes them from the CSV export. */
#ifndef MOE_TOOLS_TRACE_STATS_H
#define MOE_TOOLS_TRACE_STATS_H
#include <stdint.h>
#include "tools/trace.h"

#define MOE_STATS_TOP 8
#define MOE_STATS_MAX_MATRIX 512

typedef struct moe_stats_layer {
    uint32_t layer;
    uint64_t *load;           /* [E] */
    double *weight_sum;       /* [E] */
    double entropy_mean;      /* -1 if no token had one */
    uint64_t entropy_tokens;
    double load_entropy;
    uint64_t *coact;          /* [E][E] */
    uint64_t *trans;          /* [E][E] to layer trans_to, NULL for the last layer */
    uint32_t trans_to;
    int32_t *top_id;          /* [E][MOE_STATS_TOP], -1 where fewer tokens */
    uint64_t *top_count;      /* [E][MOE_STATS_TOP] */
    double *top_share;        /* [E][MOE_STATS_TOP] */
} moe_stats_layer;

typedef struct moe_trace_stats {
    uint32_t n_layers, E;
    uint64_t n_tokens;
    double experts_per_token;  /* mean |S(t)| over tokens and layers */
    moe_stats_layer *layers;
} moe_trace_stats;

moe_status moe_trace_stats_compute(const moe_trace *t, moe_trace_stats *s);
void moe_trace_stats_free(moe_trace_stats *s);

/* Write dir/stats.json, the heatmaps dir/load.png, dir/coact_L<l>.png and dir/trans_L<l>.png, and the
 * self-contained dir/report.html (pictures inline, no network). Co-activation and transition matrices
 * are computed for up to MOE_STATS_MAX_MATRIX experts (their size grows as E^2). */
moe_status moe_trace_stats_write(const moe_trace *t, const moe_trace_stats *s, const char *dir);
#endif
