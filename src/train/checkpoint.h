/* checkpoint.h - checkpoints of a training run, one folder:
 *   config.json + model.safetensors   the model in a Hugging Face layout (qwen3_moe, mixtral or dots1;
 *                                     with "moe_router" keys and model_type "moe_<layout>" for what the
 *                                     layout cannot express; see docs/ROUTERS.md) - what `moe info`,
 *                                     `moe logits`, `moe generate` and (standard layouts) transformers load;
 *   tokenizer.json (+ _config.json)   a copy of --tokenizer's, or for byte-level models each byte one token;
 *   train.json                        the full training config (moe_tconfig);
 *   train_state.bin                   everything --resume needs to continue bit for bit: step, the two
 *                                     random streams, all values and both AdamW moments, checksummed.
 * Every file is written atomically (temporary file, fsync, rename), so a kill at any moment leaves
 * each file either old or new, never torn. train_state.bin holds the values too, so a resume never
 * depends on which of model.safetensors and train_state.bin was renamed last. */
#ifndef MOE_TRAIN_CHECKPOINT_H
#define MOE_TRAIN_CHECKPOINT_H
#include "train/tparams.h"
#include <cjson/cJSON.h>

typedef struct moe_train_state {
    int64_t step;
    uint64_t data_rng, model_rng;
} moe_train_state;

/* config.json for a training config (caller deletes). */
cJSON *moe_ckpt_config_json(const moe_tconfig *c);
/* Create dir if needed; write config.json and model.safetensors. */
moe_status moe_ckpt_save_model(const moe_tparams *p, const char *dir);
/* Write train.json and train_state.bin. */
moe_status moe_ckpt_save_state(const moe_tparams *p, const moe_train_state *s, const char *dir);
/* Read train.json into c (over its current values). */
moe_status moe_ckpt_read_train_config(const char *dir, moe_tconfig *c);
/* Restore values, moments and state from train_state.bin; the table must match. */
moe_status moe_ckpt_load_state(moe_tparams *p, moe_train_state *s, const char *dir);
/* Set values from a model folder's safetensors by tensor name and shape (buffers may be absent). */
moe_status moe_ckpt_load_weights(moe_tparams *p, const char *dir);
/* Remove temporary files that a killed write left in dir (NAME.tmp.XXXXXX of the files above); call
 * only while no other process writes there. */
void moe_ckpt_clean_temporaries(const char *dir);
/* Copy a file atomically (tokenizer files into a checkpoint). */
moe_status moe_ckpt_copy_file(const char *from, const char *to);
/* mkdir -p for one level. */
moe_status moe_ckpt_mkdir(const char *dir);
#endif
