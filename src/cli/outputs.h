/* outputs.h - a command's output paths, checked before its work starts. An output must be writable
 * as the atomic writer allows (src/io/atomic_file.h: never a FIFO, device or folder, directly or
 * through a link) and must not be one of the files the command reads: the model folder's own files
 * (config.json, weights, index and shards, tokenizer, template and generation files) and the other
 * inputs given. Files are compared by device and inode, so links and other spellings of a path are
 * caught. Reading an input that is also the output is refused with a usage error naming the flag. */
#ifndef MOE_CLI_OUTPUTS_H
#define MOE_CLI_OUTPUTS_H
#include "moe.h"

/* path: an output file given with flag. It must not be one of model_dir's files (model_dir may be
 * NULL) or one of inputs[0..n_inputs) (NULL entries are skipped). */
moe_status moe_cli_check_output(const char *flag, const char *path, const char *model_dir, const char *const *inputs,
                                int n_inputs);
/* dir: an output folder given with flag; names[0..n_names): the files the command writes in it. dir
 * must be usable as a folder, must not be model_dir itself, and no dir/NAME may be one of the inputs. */
moe_status moe_cli_check_output_dir(const char *flag, const char *dir, const char *model_dir, const char *const *inputs,
                                    int n_inputs, const char *const *names, int n_names);
#endif
