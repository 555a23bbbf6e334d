/* main.c - the moe command: dispatches to one file per subcommand (src/cli/cmd_*.c). */
#include "cli/commands.h"
#include "cli/ep.h"
#include "core/error.h"
#include "moe.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Adding a command: write src/cli/cmd_NAME.c and add one line here and one in commands.h. */
static const moe_command k_commands[] = {
    {"info", cmd_info, "print a model's architecture, sizes and per-token cost"},
    {"logits", cmd_logits, "run a causal prefill and write every position's logits as JSON"},
    {"generate", cmd_generate, "continue a token sequence greedily and print the token ids"},
    {"quantize", cmd_quantize, "write a block-quantized copy of a model (q8_0, q4, mixed)"},
    {"eval", cmd_eval, "perplexity of a model over a token file (sliding windows)"},
    {"bench", cmd_bench, "measure prefill and decode speed against the memory-bandwidth roofline"},
    {"run", cmd_run, "generate text from a prompt (or chat), streaming it"},
    {"serve", cmd_serve, "serve a model over an OpenAI-compatible HTTP API with continuous batching"},
    {"tokenize", cmd_tokenize, "turn text into token ids with a tokenizer.json, or ids into text"},
    {"train", cmd_train, "train a mixture-of-experts language model and write HF-style checkpoints"},
    {"fit-predictor", cmd_fit_predictor, "fit the cross-layer expert predictor that --prefetch reads ahead by"},
    {"upcycle", cmd_upcycle, "turn a dense model into a mixture of experts (experts copy the FFN)"},
    {"trace", cmd_trace, "record the experts every layer chooses for every token of a text"},
    {"stats", cmd_stats, "routing statistics, heatmaps and an HTML report of a trace"},
    {"prune", cmd_prune, "remove the least important experts (frequency, REAP or task score)"},
    {"merge", cmd_merge, "merge each layer's experts into fewer (M-SMoE, HC-SMoE)"},
    {"superexperts", cmd_superexperts, "find experts with extreme down-projection outputs (Super Experts)"},
};

static const char *g_cmd;   /* the running command, for "moe CMD: ..." usage messages */

int moe_cli_error(int st) {
    if (st == MOE_EUSAGE && g_cmd) fprintf(stderr, "moe %s: %s\n", g_cmd, moe_last_error());
    else fprintf(stderr, "moe: %s\n", moe_last_error());
    return moe_exit_code((moe_status)st);
}

moe_status moe_cli_stdout_check(void) {
    errno = 0;
    int flushed = fflush(stdout) == 0;
    int e = errno;
    if (flushed && !ferror(stdout)) return MOE_OK;
    return e ? moe_fail(MOE_EIO, "standard output: cannot write: %s", strerror(e))
             : moe_fail(MOE_EIO, "standard output: cannot write");
}

/* A descriptor 0, 1 or 2 that the caller closed (`moe ... >&-`) would be reused by the next file we
 * open, and printf would then write into a model file. Park /dev/null there, read-only, so that
 * writes to a closed stdout fail (and are reported) instead. */
static void guard_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (n >= 0 && n != fd) {
            dup2(n, fd);   /* dup2 clears close-on-exec on fd */
            close(n);
        } else if (n == fd) {
            fcntl(fd, F_SETFD, 0);
        }
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: moe COMMAND [options]   (moe COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof *k_commands; i++)
        fprintf(f, "  %-13s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "\nmoe %s, SIMD: %s, MPI expert parallelism: %s\n", MOE_VERSION_STRING, moe_simd_name(),
            moe_cli_ep_built() ? "yes" : "no (built without MPI)");
}

/* Output the command wrote to stdout and could not deliver (a full disk, a closed stdout) is a
 * failure even when the command itself finished: one line, exit 2. */
static int finish(int rc) {
    if (moe_cli_stdout_check() != MOE_OK && rc == 0) rc = moe_cli_error(MOE_EIO);
    return rc;
}

/* The commands that run under mpirun -np R > 1 (expert parallelism, cli/ep.h): every rank runs the
 * same command on the same input, so they stay in step. */
static int runs_parallel(const char *cmd) {
    return !strcmp(cmd, "logits") || !strcmp(cmd, "generate") || !strcmp(cmd, "run") || !strcmp(cmd, "eval");
}

static int dispatch(int argc, char **argv);

int main(int argc, char **argv) {
    guard_std_fds();
    int rc = moe_cli_ep_init(&argc, &argv);
    if (rc) return rc;
    return moe_cli_ep_finish(dispatch(argc, argv));
}

static int dispatch(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 1; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return finish(0); }
    if (!strcmp(argv[1], "--version")) { printf("moe %s\n", MOE_VERSION_STRING); return finish(0); }
    for (size_t i = 0; i < sizeof k_commands / sizeof *k_commands; i++)
        if (!strcmp(argv[1], k_commands[i].name)) {
            g_cmd = k_commands[i].name;
            if (moe_cli_ep_size() > 1 && !runs_parallel(g_cmd) && !(argc > 2 && !strcmp(argv[2], "--help"))) {
                fprintf(stderr, "moe %s: expert parallelism (mpirun -np %d) runs logits, generate, run and eval only\n",
                        g_cmd, moe_cli_ep_size());
                return 1;
            }
            return finish(k_commands[i].run(argc - 1, argv + 1));
        }
    fprintf(stderr, "moe: unknown command '%.60s' (see moe --help)\n", argv[1]);
    return 1;
}
