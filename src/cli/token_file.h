/* token_file.h - token sequences for `moe eval`, `moe quantize` and `moe fit-predictor`: ids from a file (whitespace- or
 * comma-separated non-negative integers), or a text file run through a tokenizer.json. */
#ifndef MOE_CLI_TOKEN_FILE_H
#define MOE_CLI_TOKEN_FILE_H
#include <stdint.h>
#include "moe.h"

/* *ids gets n ids (free with free()). Fails on anything but ids and separators, naming the offset. */
moe_status moe_cli_read_token_file(const char *path, int32_t **ids, int *n);
/* Tokenize a UTF-8 text file with the tokenizer.json at tok_path (a file or a folder, e.g. the model's),
 * as tokenizers' encode(text, add_special_tokens=False). With max_tokens > 0 only the first max_tokens
 * ids: the file is read and encoded in parts (src/io/tokenize_stream.h) until they are there. */
moe_status moe_cli_tokenize_file(const char *tok_path, const char *text_path, int max_tokens, int32_t **ids, int *n);
/* Fails, naming src and the first offending index, if an id is not below vocab. */
moe_status moe_cli_check_vocab(const char *src, const int32_t *ids, int n, int vocab);
#endif
