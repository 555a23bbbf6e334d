/* optim.h - AdamW with decoupled weight decay, global-norm gradient clipping, and the learning-rate
 * schedule (linear warmup, then cosine decay to min_lr at the last step). Sums run in a fixed order
 * so that a resumed run reproduces the original bit for bit. */
#ifndef MOE_TRAIN_OPTIM_H
#define MOE_TRAIN_OPTIM_H
#include "train/tparams.h"

/* L2 norm of the gradients of the trainable parameters. */
double moe_grad_norm(const moe_tparams *p);
/* One AdamW step (step counts from 1); gradients are multiplied by grad_scale first (clipping). */
void moe_adamw_step(moe_tparams *p, const moe_tconfig *c, int64_t step, double lr, double grad_scale);
/* Learning rate at a step (1-based). */
double moe_lr_at(const moe_tconfig *c, int64_t step);
#endif
