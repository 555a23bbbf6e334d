/* trainer.h - the training loop of `moe train`: batches, forward, backward, clipping, AdamW, the
 * routers' non-gradient updates, evaluation on the held-out split, checkpoints and progress.
 * Everything random flows from the seed through two streams (batches; stochastic routers) whose
 * states are saved with each checkpoint, so the same seed gives the same losses and --resume
 * continues exactly where the run stopped. */
#ifndef MOE_TRAIN_TRAINER_H
#define MOE_TRAIN_TRAINER_H
#include "moe/router_losses.h"
#include "io/out_dir.h"
#include "train/tconfig.h"

typedef struct moe_train_opts {
    const char *data;      /* text file (bytes are the tokens) */
    const char *out;       /* checkpoint folder, or NULL */
    moe_outdir *outdir;    /* out opened (locked) by the caller; NULL: opened here */
    const char *init;      /* start from the weights of this model folder (upcycled or trained), or NULL */
    int resume;            /* continue from out/train_state.bin */
    int json;              /* one JSON object per logged step on stdout */
    int quiet;             /* no progress on stderr */
    int log_every;         /* progress line every N steps when stderr is not a terminal (0: auto) */
    int stop_after;        /* stop after this step without a final checkpoint (0: run to the end) */
} moe_train_opts;

typedef struct moe_train_result {
    int64_t steps;
    double train_loss;        /* mean cross-entropy of the last 10% of steps */
    double val_loss;          /* last evaluation */
    double tok_per_s;         /* training tokens per second (forward + backward + update) */
    moe_route_stats stats;    /* routing statistics, mean over MoE layers and the last 10% of steps */
    uint64_t n_params, n_active;
} moe_train_result;

moe_status moe_train(const moe_tconfig *c, const moe_train_opts *o, moe_train_result *r);
/* Whether a finished config can be trained in `available` bytes (< 0: unknown, no limit): the tokens per
 * step and routing tables within the loop's integer range, then parameters (with gradients and both
 * AdamW moments) plus one step's activations, all estimated in double. MOE_EUSAGE with one line naming
 * the flags and the estimate in GiB if not. */
moe_status moe_train_check_size(const moe_tconfig *c, double available);
/* The estimate: bytes of parameters with gradients and moments, bytes of one step's activations. */
void moe_train_estimate(const moe_tconfig *c, double *param_bytes, double *act_bytes);
/* moe_train_check_size against the memory available now (/proc/meminfo MemAvailable, the cgroup limit). */
moe_status moe_train_check_memory(const moe_tconfig *c);
#endif
