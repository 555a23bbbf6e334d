/* commands.h - every subcommand of the moe tool: int cmd_NAME(int argc, char **argv), argv[0] being
 * the command name. Each returns the process exit code (0 ok, 1 usage, 2 bad input). */
#ifndef MOE_CLI_COMMANDS_H
#define MOE_CLI_COMMANDS_H
#include "moe.h"

typedef struct moe_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} moe_command;

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_upcycle(int argc, char **argv);
int cmd_fit_predictor(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_superexperts(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Print "moe: <last error>" (a usage error: "moe CMD: <last error>") to stderr and return the exit
 * code for st. */
int moe_cli_error(int st);
/* Flush stdout; MOE_EIO with "standard output: cannot write: <reason>" if anything written to it was
 * lost. Streaming commands call it as they go so that they stop at the first failed write. */
moe_status moe_cli_stdout_check(void);
#endif
