/* cmd_info.c - `moe info MODEL`: architecture, sizes, parameters and per-token cost. */
#include "cli/args.h"
#include "cli/commands.h"
#include "io/json.h"
#include "moe.h"
#include <stdio.h>

static void human(char *buf, size_t cap, double v, const char *unit) {
    const char *pre[] = {"", " K", " M", " G", " T"};
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    snprintf(buf, cap, i ? "%.2f%s%s" : "%.0f%s%s", v, pre[i], unit);
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    const moe_opt opts[] = {
        {"json", 0, ARG_FLAG, &json, NULL, "print the counts as one JSON object", 0, 0},
        {0},
    };
    const moe_cmd_spec spec = {"info", "MODEL [options]", "Print a model's architecture, sizes and per-token cost.",
                               "Active parameters count the routed experts a token uses (top-k of each MoE layer)\n"
                               "plus everything else; bytes per token are the weight bytes one decoded token reads\n"
                               "(one embedding row, all non-expert matrices, top-k experts per MoE layer, the head).",
                               opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    moe_model *m;
    moe_status st = moe_model_load(pos[0], &m);
    if (st) return moe_cli_error(st);
    const moe_model_info *I = moe_model_get_info(m);
    if (json) {
        /* model_type comes from config.json: escaped, so that any string stays valid JSON */
        printf("{\"model_type\": ");
        moe_json_put_str(stdout, I->model_type);
        printf(", \"format\": ");
        moe_json_put_str(stdout, I->format);
        printf(", \"dtype\": ");
        moe_json_put_str(stdout, I->weight_dtype);
        printf(", \"layers\": %d, \"moe_layers\": %d, \"hidden_size\": %d, "
               "\"vocab_size\": %d, \"heads\": %d, \"kv_heads\": %d, \"experts\": %d, \"top_k\": %d, "
               "\"shared_experts\": %d, \"stored_experts\": %d, \"params\": %llu, \"active_params\": %llu, "
               "\"bytes_per_token\": %llu}\n",
               I->n_layers, I->n_moe_layers, I->hidden_size, I->vocab_size, I->n_heads,
               I->n_kv_heads, I->n_experts, I->top_k, I->n_shared_experts, I->n_stored_experts, (unsigned long long)I->n_params,
               (unsigned long long)I->n_active_params, (unsigned long long)I->bytes_per_token);
    } else {
        char a[32], b[32], c[32];
        human(a, sizeof a, (double)I->n_params, "");
        human(b, sizeof b, (double)I->n_active_params, "");
        human(c, sizeof c, (double)I->bytes_per_token, "B");
        printf("model          %s\n", pos[0]);
        printf("architecture   %s\n", I->model_type);
        printf("format         %s\n", I->format);
        printf("weights        %s\n", I->weight_dtype);
        printf("layers         %d (%d MoE)\n", I->n_layers, I->n_moe_layers);
        printf("hidden size    %d\n", I->hidden_size);
        printf("heads          %d (%d key/value)\n", I->n_heads, I->n_kv_heads);
        printf("vocabulary     %d\n", I->vocab_size);
        printf("experts        %d routed, top-%d, %d shared\n", I->n_experts, I->top_k, I->n_shared_experts);
        if (I->n_stored_experts != I->n_experts)
            printf("merged         the %d router slots share %d stored experts per layer\n", I->n_experts, I->n_stored_experts);
        printf("parameters     %s total (%llu)\n", a, (unsigned long long)I->n_params);
        printf("active/token   %s (%llu, %.1f%% of total)\n", b, (unsigned long long)I->n_active_params,
               100.0 * (double)I->n_active_params / (double)(I->n_params ? I->n_params : 1));
        printf("read/token     %s of weights (%llu bytes)\n", c, (unsigned long long)I->bytes_per_token);
    }
    moe_model_free(m);
    return 0;
}
