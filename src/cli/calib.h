/* calib.h - the calibration text of `moe prune`, `moe merge` and `moe superexperts`: --calib FILE (text,
 * tokenized with the model's tokenizer.json) or --calib-ids FILE (token ids), cut to at most N tokens,
 * checked against the vocabulary; and the progress bar of the calibration pass. */
#ifndef MOE_CLI_CALIB_H
#define MOE_CLI_CALIB_H
#include <stdint.h>
#include "moe.h"

/* Exactly one of text_path and ids_path. *ids is malloc'ed. */
moe_status moe_cli_calib_tokens(const char *tok_path, const char *text_path, const char *ids_path, int max_tokens,
                                int vocab, int32_t **ids, int *n);
/* Progress callback (user: the command's name); draws a bar on a terminal, one line at the end otherwise. */
void moe_cli_calib_progress(void *user, int done, int total);
#endif
