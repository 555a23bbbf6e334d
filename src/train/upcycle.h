/* upcycle.h - Sparse Upcycling (Komatsuzaki et al. 2022, "Sparse Upcycling: Training Mixture-of-
 * Experts from Dense Checkpoints"): every FFN of a dense model becomes an MoE block whose experts all
 * start as copies of that FFN, with a freshly initialised router; everything else is copied. With a
 * renormalised top-k router the upcycled model computes exactly the dense model's function at first
 * (the chosen experts are identical and their weights sum to one); training then lets the experts
 * diverge. The dense model's tokenizer files are copied. Reads dense checkpoints whose layers moe can
 * train: qwen3_moe with every layer dense (as `moe train --experts 0` writes), llama and mistral (no
 * q/k norms; they become mixtral). */
#ifndef MOE_TRAIN_UPCYCLE_H
#define MOE_TRAIN_UPCYCLE_H
#include "train/tconfig.h"

/* c: the MoE's settings (experts, top_k, router, seed, init_std, ...); the shape fields are taken
 * from the dense model. Writes config.json, model.safetensors and train.json into dst. */
moe_status moe_upcycle(const char *src, const char *dst, moe_tconfig *c);
#endif
