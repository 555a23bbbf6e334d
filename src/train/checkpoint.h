/* checkpoint.h - checkpoints of a training run, one folder:
 *   config.json + model.safetensors   the model in a Hugging Face layout (qwen3_moe, mixtral or dots1;
 *                                     with "moe_router" keys and model_type "moe_<layout>" for what the
 *                                     layout cannot express; see docs/ROUTERS.md) - what `moe info`,
 *                                     `moe logits`, `moe generate` and (standard layouts) transformers load;
 *   tokenizer.json (+ _config.json)   a copy of --tokenizer's, or for byte-level models each byte one token;
 *   train.json                        the full training config (moe_tconfig);
 *   train_state.bin                   everything --resume needs to continue bit for bit: step, the two
 *                                     random streams, all values and both AdamW moments, checksummed.
 * A save writes all of them into a staging folder and swaps it in whole (src/io/out_dir.h), so a kill
 * at any moment leaves the previous checkpoint or the new one, never a mix, and a second run on the
 * same folder is refused while the first holds its lock. */
#ifndef MOE_TRAIN_CHECKPOINT_H
#define MOE_TRAIN_CHECKPOINT_H
#include "io/out_dir.h"
#include "train/tparams.h"
#include <cjson/cJSON.h>

typedef struct moe_train_state {
    int64_t step;
    uint64_t data_rng, model_rng;
} moe_train_state;

/* config.json for a training config (caller deletes). */
cJSON *moe_ckpt_config_json(const moe_tconfig *c);
/* Write config.json, model.safetensors and the tokenizer files into the save in progress od->write. */
moe_status moe_ckpt_write_model(const moe_tparams *p, moe_outdir *od);
/* Write train.json and train_state.bin into the save in progress od->write. */
moe_status moe_ckpt_write_state(const moe_tparams *p, const moe_train_state *s, moe_outdir *od);
/* A model folder on its own: lock dir, moe_ckpt_write_model, swap it in, unlock. */
moe_status moe_ckpt_save_model(const moe_tparams *p, const char *dir);
/* Read train.json into c (over its current values). */
moe_status moe_ckpt_read_train_config(const char *dir, moe_tconfig *c);
/* Restore values, moments and state from train_state.bin; the table must match. */
moe_status moe_ckpt_load_state(moe_tparams *p, moe_train_state *s, const char *dir);
/* Set values from a model folder's safetensors by tensor name and shape (buffers may be absent). */
moe_status moe_ckpt_load_weights(moe_tparams *p, const char *dir);
#endif
