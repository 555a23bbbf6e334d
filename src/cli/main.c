/* main.c - the moe command: dispatches to one file per subcommand (src/cli/cmd_*.c). */
#include "cli/commands.h"
#include "moe.h"
#include <stdio.h>
#include <string.h>

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
};

int moe_cli_error(int st) {
    fprintf(stderr, "moe: %s\n", moe_last_error());
    return moe_exit_code((moe_status)st);
}

static void usage(FILE *f) {
    fprintf(f, "usage: moe COMMAND [options]   (moe COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof *k_commands; i++)
        fprintf(f, "  %-13s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f, "\nmoe %s, SIMD: %s\n", MOE_VERSION_STRING, moe_simd_name());
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 1; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version")) { printf("moe %s\n", MOE_VERSION_STRING); return 0; }
    for (size_t i = 0; i < sizeof k_commands / sizeof *k_commands; i++)
        if (!strcmp(argv[1], k_commands[i].name)) return k_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "moe: unknown command '%.60s' (see moe --help)\n", argv[1]);
    return 1;
}
