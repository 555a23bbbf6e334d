/* calib.c - see calib.h. */
#include "cli/calib.h"
#include "cli/progress.h"
#include "cli/token_file.h"
#include "core/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

moe_status moe_cli_calib_tokens(const char *tok_path, const char *text_path, const char *ids_path, int max_tokens,
                                int vocab, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    const char *src = text_path ? text_path : ids_path;
    MOE_TRY(text_path ? moe_cli_tokenize_file(tok_path, text_path, max_tokens, ids, n) : moe_cli_read_token_file(ids_path, ids, n));
    if (max_tokens > 0 && *n > max_tokens) *n = max_tokens;
    moe_status st = *n < 1 ? moe_fail(MOE_EINPUT, "%s: no tokens", src) : moe_cli_check_vocab(src, *ids, *n, vocab);
    if (st) { free(*ids); *ids = NULL; *n = 0; }
    return st;
}

void moe_cli_calib_progress(void *user, int done, int total) {
    int tty = isatty(2);
    if (!tty && done < total) return;
    fprintf(stderr, "%s%s: calibrating ", tty ? "\r" : "", (const char *)user);
    moe_cli_bar(stderr, done, total, 30);
    fprintf(stderr, " %d/%d tokens", done, total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}
