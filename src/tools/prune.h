/* prune.h - expert pruning (the library side of `moe prune`, docs/COMPRESSION.md).
 *
 * Each MoE layer keeps the `keep` experts with the highest importance on calibration text
 * (tools/expert_calib.h) and loses the others with their router rows:
 *   freq  frequency of selection: tokens routed to the expert;
 *   reap  REAP (Lasby et al. 2025): the router-weighted norm of the expert's output, averaged over
 *         the tokens routed to it: (1/|X_e|) sum over x in X_e of g_e(x) ||f_e(x)||_2 (0 if never routed);
 *   task  after PreMoe's task-conditioned expected selection score: the router probability summed over
 *         the tokens of a task text that choose the expert with at least `threshold` of the chosen
 *         experts' probability.
 * Ties go to the more frequent, then the lower-numbered expert. The kept experts keep their order.
 * Routers whose groups constrain the choice (DeepSeek's n_group) keep keep/n_group experts per group,
 * so groups stay equal; keep must then be a multiple of n_group. keep must be at least the top-k.
 * With keep equal to the expert count nothing changes (the output's logits are identical). */
#ifndef MOE_TOOLS_PRUNE_H
#define MOE_TOOLS_PRUNE_H
#include <stdio.h>
#include "tools/expert_calib.h"

typedef enum { MOE_PRUNE_FREQ = 0, MOE_PRUNE_REAP, MOE_PRUNE_TASK } moe_prune_method;

typedef struct moe_prune_options {
    moe_prune_method method;
    int keep;                  /* experts kept per MoE layer */
    double threshold;          /* task: relative share (the calibration's task_threshold) */
    int64_t shard_bytes;       /* 0: 4 GiB */
    FILE *log;
} moe_prune_options;

/* Refuse a plan the model cannot take (before any calibration is spent on it). */
moe_status moe_prune_check(moe_model *m, int keep);
/* Importance of every expert of MoE layer L under a method: scores[E]. */
void moe_prune_scores(const moe_calib_layer *L, int E, moe_prune_method method, double *scores);
/* Choose and write. */
moe_status moe_prune_model(moe_model *m, const moe_calib *cal, const char *out_dir, const moe_prune_options *o);
#endif
