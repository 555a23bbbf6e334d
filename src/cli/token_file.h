/* token_file.h - token ids from a file (whitespace- or comma-separated non-negative integers), the
 * stand-in for text until the tokenizer is merged: `moe eval --tokens-file`, `moe quantize --calib`. */
#ifndef MOE_CLI_TOKEN_FILE_H
#define MOE_CLI_TOKEN_FILE_H
#include <stdint.h>
#include "moe.h"

/* *ids gets n ids (free with free()). Fails on anything but ids and separators, naming the offset. */
moe_status moe_cli_read_token_file(const char *path, int32_t **ids, int *n);
#endif
