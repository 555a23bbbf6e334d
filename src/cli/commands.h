/* commands.h - every subcommand of the moe tool: int cmd_NAME(int argc, char **argv), argv[0] being
 * the command name. Each returns the process exit code (0 ok, 1 usage, 2 bad input). */
#ifndef MOE_CLI_COMMANDS_H
#define MOE_CLI_COMMANDS_H

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
int cmd_serve(int argc, char **argv);

/* Print "moe: <last error>" to stderr and return the exit code for st. */
int moe_cli_error(int st);
#endif
