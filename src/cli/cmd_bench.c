/* cmd_bench.c - `moe bench MODEL`: prefill and decode speed on random tokens, next to the machine's
 * measured read bandwidth and the decode roofline (bandwidth / bytes of weights read per token).
 * With --mem-budget the experts stay on disk as for every other command: the weights are then not
 * prefaulted (that would map every expert into memory), and --stats reports the store's counters. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "core/membw.h"
#include "io/json.h"
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_bench(int argc, char **argv) {
    int n_prompt = 512, n_gen = 32, json = 0, seed = 1, skip_bw = 0;
    moe_cli_offload off = {0};
    const moe_opt opts[] = {
        {"prompt", 'p', ARG_INT, &n_prompt, "N", "prompt tokens for the prefill measurement (default 512)", 0, 1 << 20},
        {"n-predict", 'n', ARG_INT, &n_gen, "N", "decoded tokens for the decode measurement (default 32)", 0, 1 << 20},
        {"seed", 's', ARG_INT, &seed, "S", "seed of the random tokens (default 1)", 0, 1 << 30},
        {"no-bandwidth", 0, ARG_FLAG, &skip_bw, NULL, "skip the memory bandwidth measurement", 0, 0},
        {"json", 0, ARG_FLAG, &json, NULL, "print one JSON object", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&off),
        MOE_CLI_ROUTE_OPTS(&off),
        {0},
    };
    const moe_cmd_spec spec = {"bench", "MODEL [options]",
                               "Measure prefill and decode speed on random tokens against the memory-bandwidth roofline.",
                               "The weights are read once before timing so page faults are not measured (with\n"
                               "--mem-budget only a warm-up run maps the resident weights; experts come from disk).\n"
                               "Decode roofline = measured read bandwidth / bytes of weights read per token.",
                               opts, 1, 1};
    const char *pos[1];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    moe_model *m = NULL;
    moe_session *s = NULL;
    moe_status st = moe_cli_load_model(pos[0], &off, &m);
    if (st) return moe_cli_error(st);
    const moe_model_info *I = moe_model_get_info(m);
    int ctx = n_prompt + n_gen + 1;
    st = moe_session_new(m, ctx, &s);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)ctx);
    float *logits = malloc(sizeof(float) * (size_t)I->vocab_size);
    if (!st && (!tok || !logits)) st = MOE_ENOMEM;
    double t_prefill = 0, t_decode = 0;
    if (!st) {
        srand((unsigned)seed);
        for (int i = 0; i < ctx; i++) tok[i] = rand() % I->vocab_size;
        moe_offload_stats os;
        moe_model_offload_stats(m, &os);
        if (!os.offloaded) moe_model_prefault(m);   /* offloaded: the warm-up below maps what stays resident */
        /* warm-up: run a few tokens so caches and thread pools are in their steady state */
        int warm = ctx < 8 ? ctx : 8;
        st = moe_session_eval(s, tok, warm, logits, 0);
        moe_session_reset(s);
    }
    if (!st && n_prompt > 0) {
        double t0 = now();
        st = moe_session_eval(s, tok, n_prompt, logits, 0);
        t_prefill = now() - t0;
        moe_session_reset(s);
    }
    moe_timing tm = {0};
    if (!st && n_gen > 0) {
        st = moe_session_eval(s, tok, 1, logits, 0);
        moe_session_reset_timing(s);
        double t0 = now();
        for (int i = 0; i < n_gen && !st; i++) st = moe_session_eval(s, tok + 1 + i, 1, logits, 0);
        t_decode = now() - t0;
        moe_session_get_timing(s, &tm);
    }
    if (!st && off.stats) moe_cli_print_stats(stderr, m, "bench", (uint64_t)(n_prompt + n_gen), t_prefill + t_decode);
    if (st) {
        int rc = moe_cli_error(st);
        free(tok); free(logits); moe_session_free(s); moe_model_free(m);
        return rc;
    }
    double bw = skip_bw ? 0 : moe_measure_read_bandwidth((size_t)1 << 30, moe_get_threads(), 5);
    double pp = n_prompt ? n_prompt / t_prefill : 0, tg = n_gen ? n_gen / t_decode : 0;
    double roof = bw > 0 ? bw / (double)I->bytes_per_token : 0;
    if (json) {
        /* rates of a phase too short for the clock, or of a zero-byte model, are not finite: null */
        printf("{\"model_type\": ");
        moe_json_put_str(stdout, I->model_type);
        printf(", \"threads\": %d, \"simd\": \"%s\", \"prompt_tokens\": %d, \"prefill_tok_s\": ", moe_get_threads(),
               moe_simd_name(), n_prompt);
        moe_json_put_num(stdout, "%.3f", pp);
        printf(", \"decode_tokens\": %d, \"decode_tok_s\": ", n_gen);
        moe_json_put_num(stdout, "%.3f", tg);
        printf(", \"bytes_per_token\": %llu, \"read_bandwidth_gb_s\": ", (unsigned long long)I->bytes_per_token);
        moe_json_put_num(stdout, "%.3f", bw / 1e9);
        printf(", \"roofline_tok_s\": ");
        moe_json_put_num(stdout, "%.3f", roof);
        printf(", \"decode_ms_per_token\": {\"attention\": ");
        moe_json_put_num(stdout, "%.4f", n_gen ? 1e3 * tm.attention_s / n_gen : 0);
        printf(", \"moe\": ");
        moe_json_put_num(stdout, "%.4f", n_gen ? 1e3 * tm.moe_s / n_gen : 0);
        printf(", \"dense_ffn\": ");
        moe_json_put_num(stdout, "%.4f", n_gen ? 1e3 * tm.dense_ffn_s / n_gen : 0);
        printf(", \"head\": ");
        moe_json_put_num(stdout, "%.4f", n_gen ? 1e3 * tm.head_s / n_gen : 0);
        printf("}}\n");
    } else {
        printf("model           %s (%s, %s)\n", pos[0], I->model_type, I->weight_dtype);
        printf("threads         %d (SIMD %s)\n", moe_get_threads(), moe_simd_name());
        if (n_prompt) printf("prefill         %d tokens: %.2f tok/s\n", n_prompt, pp);
        if (n_gen) {
            printf("decode          %d tokens: %.2f tok/s (%.2f GB/s of weights)\n", n_gen, tg,
                   tg * (double)I->bytes_per_token / 1e9);
            printf("  per token     attention %.2f ms, MoE %.2f ms, dense FFN %.2f ms, head %.2f ms\n",
                   1e3 * tm.attention_s / n_gen, 1e3 * tm.moe_s / n_gen, 1e3 * tm.dense_ffn_s / n_gen, 1e3 * tm.head_s / n_gen);
        }
        if (bw > 0) {
            printf("read bandwidth  %.2f GB/s measured\n", bw / 1e9);
            printf("roofline        %.2f tok/s (%.1f MB read per token)", roof, (double)I->bytes_per_token / 1e6);
            if (n_gen) printf(", decode at %.1f%% of it", 100 * tg / roof);
            printf("\n");
        }
    }
    free(tok); free(logits); moe_session_free(s); moe_model_free(m);
    return 0;
}
