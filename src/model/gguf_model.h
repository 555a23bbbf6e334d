/* gguf_model.h - loading a llama.cpp GGUF file as a moe model (see gguf_model.c for the mapping of
 * architectures, metadata and tensor names, and for what llama.cpp's converter changed). */
#ifndef MOE_MODEL_GGUF_MODEL_H
#define MOE_MODEL_GGUF_MODEL_H
#include "io/gguf.h"
#include "model/model.h"

/* Parse the file's metadata into cfg (through the architecture files, as a config.json would be)
 * and open its tensors, renamed to Hugging Face names, as a weights table. */
moe_status moe_gguf_model_open(const char *path, int in_memory, moe_config *cfg, moe_weights **out);
/* The config part alone, on a parsed file (the tensors of f are renamed in place): for fuzzing. */
moe_status moe_gguf_model_config(const char *path, moe_st_file *f, const moe_gguf_meta *meta, moe_config *cfg);
/* After binding: what GGUF stores outside the tensors the binder asks for (rope_freqs.weight). */
moe_status moe_gguf_after_bind(moe_model *m);
#endif
