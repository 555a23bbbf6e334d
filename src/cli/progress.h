/* progress.h - the progress bar of long-running commands (eval, fit-predictor): "[####......]  40%". */
#ifndef MOE_CLI_PROGRESS_H
#define MOE_CLI_PROGRESS_H
#include <stdio.h>

/* Write a bar of `width` cells filled done/total, then the percentage. */
void moe_cli_bar(FILE *f, long long done, long long total, int width);
#endif
