/* cmd_upcycle.c - `moe upcycle DENSE OUT --experts E --top-k K`: Sparse Upcycling of a dense
 * checkpoint (see src/train/upcycle.h); continue with `moe train --init OUT --data FILE`. */
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "cli/outputs.h"
#include "moe.h"
#include "train/upcycle.h"
#include <stdio.h>

int cmd_upcycle(int argc, char **argv) {
    int experts = 0, top_k = 2, norm = 1;
    double std = 0.02;
    const char *router = "softmax_topk", *seed_s = "1337";
    const moe_opt opts[] = {
        {"experts", 'e', ARG_INT, &experts, "E", "experts per MoE layer (required)", 1, 4096},
        {"top-k", 'k', ARG_INT, &top_k, "K", "experts per token (default 2)", 1, 4096},
        {"router", 0, ARG_STR, &router, "NAME", "router (default softmax_topk)", 0, 0},
        {"norm-topk", 0, ARG_INT, &norm, "0|1", "renormalise top-k weights (default 1: starts equal to the dense model)", 0, 1},
        {"init-std", 0, ARG_FLOAT, &std, "X", "standard deviation of the fresh router weights (default 0.02)", 1e-9, 10},
        {"seed", 0, ARG_STR, &seed_s, "N", "seed of the router weights", 0, 0},
        {0},
    };
    const moe_cmd_spec spec = {"upcycle", "DENSE_MODEL OUT --experts E [--top-k K] [options]",
                               "Turn a dense model into a mixture of experts: every expert starts as a copy of the\n"
                               "layer's FFN, the router starts fresh (Sparse Upcycling).",
                               "Reads qwen3_moe checkpoints with only dense layers (moe train --experts 0), llama and\n"
                               "mistral. Writes config.json, model.safetensors and train.json; continue training with\n"
                               "  moe train --init OUT --data FILE [options]",
                               opts, 2, 2};
    const char *pos[2];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (experts < 1) { fprintf(stderr, "moe upcycle: --experts is required (see moe upcycle --help)\n"); return 1; }
    moe_tconfig c;
    moe_tconfig_defaults(&c);
    c.n_experts = experts;
    c.top_k = top_k;
    c.norm_topk = norm;
    c.init_std = std;
    moe_status st = moe_tconfig_set(&c, "router", router);
    if (!st) st = moe_tconfig_set(&c, "seed", seed_s);
    if (st) { fprintf(stderr, "moe upcycle: %s\n", moe_last_error()); return 1; }
    static const char *const outs[] = {"config.json", "model.safetensors", "train.json", "tokenizer.json",
                                       "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"};
    st = moe_cli_check_output_dir("OUT", pos[1], pos[0], NULL, 0, outs, (int)(sizeof outs / sizeof *outs));
    if (!st) st = moe_upcycle(pos[0], pos[1], &c);
    if (st == MOE_EUSAGE) { fprintf(stderr, "moe upcycle: %s\n", moe_last_error()); return 1; }
    if (st) return moe_cli_error(st);
    fprintf(stderr, "moe upcycle: %s -> %s: %d layers of %d experts (top-%d, %s router), layout %s\n", pos[0], pos[1],
            c.n_layers, c.n_experts, c.top_k, c.router, c.layout);
    return 0;
}
