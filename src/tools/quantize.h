/* quantize.h - writing a quantized copy of a model folder (the library side of `moe quantize`).
 *
 * What is quantized: every routed expert's matrices, and the other projection matrices (attention,
 * dense and shared FFNs). What is not: the embedding table (rows are read directly), the LM head, the
 * routers and the shared-expert gate (small, and a flipped routing decision costs more than their
 * bytes), norms and biases. Those keep their dtype and bytes.
 *
 * Layout: one model.safetensors; non-expert tensors first, then experts by (layer, expert) with gate,
 * up and down back to back, so the on-disk expert store loads an expert with one read. Quantized
 * tensors are U8 [rows, row_bytes] described by the "moe_quant" metadata (io/quant_meta.h).
 *
 * mixed: each expert gets q4 or q8_0. Its importance is its activation frequency on calibration text
 * times its quantization error (squared Frobenius norm of W - Q(W) over its three matrices), as in
 * MC-MoE and EdgeMoE; starting from all q4, experts are promoted to q8_0 in order of error removed per
 * extra byte, frequency-weighted, while the output fits the budget. Non-expert matrices get q8_0. */
#ifndef MOE_TOOLS_QUANTIZE_H
#define MOE_TOOLS_QUANTIZE_H
#include <stdio.h>
#include "model/model.h"

#define MOE_QUANT_MIXED (-1)

typedef struct moe_quantize_options {
    int type;                  /* MOE_Q8_0, MOE_Q4 or MOE_QUANT_MIXED */
    int64_t budget;            /* mixed: most bytes of tensor data in the output (required) */
    const double *expert_freq; /* mixed: [n_layers * n_experts] tokens routed to each expert, or NULL */
    FILE *log;                 /* progress and the mixed report; may be NULL */
} moe_quantize_options;

/* Write out_dir/model.safetensors and copy config.json and tokenizer files from m's folder.
 * out_dir is created if missing and must not be m's own folder. */
moe_status moe_quantize_model(moe_model *m, const char *out_dir, const moe_quantize_options *o);
/* Copy config.json, generation_config.json and the tokenizer files that exist in src_dir to dst_dir
 * (atomically; also used by moe prune and moe merge, which then rewrite config.json). */
moe_status moe_copy_model_files(const char *src_dir, const char *dst_dir);
#endif
