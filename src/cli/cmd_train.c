/* cmd_train.c - `moe train --data FILE [--out DIR] [options]`: train a decoder-only MoE language model
 * on text (bytes or a tokenizer.json's ids), write Hugging Face-style checkpoints, optionally print a sample from the result.
 * Every model and optimiser option comes from the table in src/train/tconfig.c, so flags, --config
 * files and train.json use the same names. Precedence: defaults < --preset < the train.json of --init
 * < --config < flags; with --resume the checkpoint's train.json replaces all but the flags. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/outputs.h"
#include "core/error.h"
#include "moe.h"
#include "model/sampler.h"
#include "moe/router.h"
#include "io/out_dir.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Sample n tokens from the saved checkpoint with the inference engine (so the demo also proves that
 * the checkpoint loads). Text goes through the checkpoint's
 * tokenizer.json (byte-level or the one trained with); a checkpoint without one is read as bytes.
 * Temperature sampling (0: greedy) with moe run's sampler, seeded from the training seed. */
static moe_status sample_text(const char *dir, const char *prompt, int n, double temp, uint64_t seed) {
    moe_model *m = NULL;
    moe_session *s = NULL;
    moe_tokenizer *tk = NULL;
    moe_detokenizer *dt = NULL;
    float *logits = NULL;
    int32_t *tok = NULL;
    size_t plen = 0;
    char tpath[1024];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    moe_status st = access(tpath, F_OK) == 0 ? moe_tokenizer_load(tpath, &tk) : MOE_OK;
    if (!st && tk) st = moe_detokenizer_new(tk, 1, &dt);
    if (!st && tk && *prompt) {
        st = moe_tokenizer_encode(tk, prompt, strlen(prompt), &tok, &plen);
    } else if (!st) {
        plen = strlen(prompt);
        if (!(tok = malloc(sizeof(int32_t) * (plen + 1)))) st = moe_fail(MOE_ENOMEM, "out of memory");
        for (size_t i = 0; !st && i < plen; i++) tok[i] = (unsigned char)prompt[i];
    }
    if (!st && plen == 0) {   /* no prompt: start from a newline */
        int32_t nl = '\n';
        if (tk) {
            int32_t *ids;
            size_t k;
            if (moe_tokenizer_encode(tk, "\n", 1, &ids, &k) == MOE_OK && k > 0) nl = ids[k - 1];
            if (k == 0 || nl < 0) nl = 0;
            free(ids);
        }
        tok[0] = nl;
        plen = 1;
    }
    if (!st) st = moe_model_load(dir, &m);
    if (!st) st = moe_session_new(m, (int)plen + n + 1, &s);
    int V = m ? moe_model_get_info(m)->vocab_size : 0;
    if (!st && !(logits = malloc(sizeof(float) * (size_t)V))) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (!st) {
        fwrite(prompt, 1, strlen(prompt), stdout);
        st = moe_session_eval(s, tok, (int)plen, logits, 0);
    }
    moe_sampler sp = {0};
    const moe_sampler_params spp = {temp, 0, 1.0, 0.0, moe_hash64(seed ^ 0x73616d70ULL)};
    if (!st && moe_sampler_init(&sp, &spp, V) != 0) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (!st && tk && moe_sampler_restrict_to_tokenizer(&sp, tk) != 0)   /* --vocab padding has no text */
        st = moe_fail(MOE_EINPUT, "%s: the tokenizer has no token for any of the model's ids", tpath);
    for (int i = 0; i < n && !st; i++) {
        int32_t next = moe_sampler_next(&sp, logits);
        if (dt) {
            const char *text;
            size_t len;
            if ((st = moe_detokenizer_push(dt, next, &text, &len)) != MOE_OK) break;
            if (len) fwrite(text, 1, len, stdout);
        } else if (next < 256) {
            fputc(next, stdout);
        }
        st = moe_session_eval(s, &next, 1, logits, 0);
    }
    if (!st && dt) {
        const char *text;
        size_t len;
        if (moe_detokenizer_flush(dt, &text, &len) == MOE_OK && len) fwrite(text, 1, len, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
    moe_sampler_free(&sp);
    free(logits);
    free(tok);
    moe_detokenizer_free(dt);
    moe_tokenizer_free(tk);
    moe_session_free(s);
    moe_model_free(m);
    return st;
}

/* With --tokenizer the vocabulary follows the tokenizer, unless --vocab asks for more (padding). */
static moe_status fit_vocab(moe_tconfig *c) {
    moe_tokenizer *t;
    MOE_TRY(moe_tokenizer_load(c->tokenizer, &t));
    int tv = moe_tokenizer_vocab_size(t);
    moe_tokenizer_free(t);
    if (c->vocab == 256) c->vocab = tv;
    else if (c->vocab < tv)
        return moe_fail(MOE_EUSAGE, "--vocab %d is smaller than the vocabulary of %s (%d)", c->vocab, c->tokenizer, tv);
    return MOE_OK;
}

/* The checkpoint folder, before training starts rather than at the first save: a folder we can
 * write (or create), not --init's folder, and none of its checkpoint files a FIFO or a link to an input. */
static moe_status check_out(const char *out, const char *init, const char *data, const char *config, int resume) {
    static const char *const outs[] = {"config.json", "model.safetensors", "train.json", "train_state.bin",
                                       "tokenizer.json", "tokenizer_config.json"};
    const char *ins[] = {data, config};
    return moe_cli_check_output_dir("--out", out, resume ? NULL : init, ins, 2, outs, (int)(sizeof outs / sizeof *outs));
}

/* OpenMP threads that finish a parallel region spin for a while before sleeping (libgomp's default).
 * A training step runs hundreds of short parallel regions; on a machine shared with other work, a
 * spinning thread takes the core its partner needs and a step can slow down tenfold. libgomp reads
 * its wait policy only when it loads, so the command re-executes itself once with
 * OMP_WAIT_POLICY=passive unless the user chose a policy. (Measured: 2 threads on 2 busy cores,
 * 1.3-2.8k tokens/s spinning, 8.6-8.9k passive.) */
static void prefer_passive_wait(char **argv) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (getenv("OMP_WAIT_POLICY") || n <= 0 || (size_t)n >= sizeof self - 1) return;
    self[n] = 0;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv(self, argv - 1);               /* argv[-1] is the program name: main passes argv + 1 */
    unsetenv("OMP_WAIT_POLICY");         /* exec failed: carry on as we are */
}

int cmd_train(int argc, char **argv) {
    prefer_passive_wait(argv);
    const char *data = NULL, *out = NULL, *preset = NULL, *config = NULL, *init = NULL, *prompt = "";
    int resume = 0, json = 0, quiet = 0, sample = 0, log_every = 0, stop_after = 0;
    double temperature = 0.8;
    enum { NFIX = 13 };
    static const char *vals[128];
    static moe_opt opts[NFIX + 128];
    const moe_opt fixed[NFIX] = {
        {"data", 0, ARG_STR, &data, "FILE", "training text (required); the last --val-fraction is held out", 0, 0},
        {"out", 'o', ARG_STR, &out, "DIR", "checkpoint folder (config.json, model.safetensors, train state)", 0, 0},
        {"preset", 0, ARG_STR, &preset, "NAME", "tiny or small", 0, 0},
        {"config", 0, ARG_STR, &config, "FILE", "JSON object of options (keys as below, with underscores)", 0, 0},
        {"resume", 0, ARG_FLAG, &resume, NULL, "continue the run saved in --out, bit for bit", 0, 0},
        {"init", 0, ARG_STR, &init, "DIR", "start from this model folder's weights (e.g. moe upcycle output)", 0, 0},
        {"json", 0, ARG_FLAG, &json, NULL, "print one JSON object per step on stdout", 0, 0},
        {"quiet", 'q', ARG_FLAG, &quiet, NULL, "no progress on stderr", 0, 0},
        {"log-every", 0, ARG_INT, &log_every, "N", "progress line every N steps when stderr is not a terminal", 1, 1 << 30},
        {"sample", 0, ARG_INT, &sample, "N", "after training, print N tokens sampled from the checkpoint", 0, 1 << 20},
        {"prompt", 0, ARG_STR, &prompt, "TEXT", "text the sample continues (default: a newline)", 0, 0},
        {"temperature", 0, ARG_FLOAT, &temperature, "T", "sampling temperature (0: greedy; default 0.8)", 0, 100},
        {"stop-after", 0, ARG_INT, &stop_after, "N", "stop after step N without the final checkpoint (tests)", 1, 1 << 30},
    };
    memcpy(opts, fixed, sizeof fixed);
    int nf = moe_tconfig_n_fields < 127 ? moe_tconfig_n_fields : 127;
    for (int i = 0; i < nf; i++) {
        const moe_tfield *f = &moe_tconfig_fields[i];
        vals[i] = NULL;
        opts[NFIX + i] = (moe_opt){f->name, 0, ARG_STR, &vals[i], f->type == 's' ? "NAME" : f->type == 'p' ? "FILE" : "X", f->help, 0, 0};
    }
    opts[NFIX + nf] = (moe_opt){0};
    static char details[1024];
    snprintf(details, sizeof details,
             "Routers: %s.\nThe checkpoint layout follows the router (docs/ROUTERS.md): qwen3_moe, mixtral, or dots1 for\n"
             "deepseek_v3; other routers add \"moe_router\" keys that moe reads and transformers ignores.\n"
             "Progress (step, loss, held-out loss, routing load CV, dropped tokens, router entropy, tokens/s,\n"
             "ETA) goes to stderr. Ctrl-C stops after the current step and saves a checkpoint.",
             moe_router_names());
    const moe_cmd_spec spec = {"train", "--data FILE [--out DIR] [options]",
                               "Train a mixture-of-experts language model on text (bytes, or the ids of --tokenizer).", details, opts, 0, 0};
    int npos, r = moe_args_parse(&spec, argc, argv, NULL, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    if (!data) { fprintf(stderr, "moe train: --data is required (see moe train --help)\n"); return 1; }
    if (resume && !out) { fprintf(stderr, "moe train: --resume needs --out DIR\n"); return 1; }
    if (resume && init) { fprintf(stderr, "moe train: --resume and --init exclude each other\n"); return 1; }
    if (sample && !out) { fprintf(stderr, "moe train: --sample needs --out DIR\n"); return 1; }
    moe_tconfig c;
    moe_tconfig_defaults(&c);
    moe_status st = MOE_OK;
    if (resume) {
        st = moe_ckpt_read_train_config(out, &c);
    } else {
        if (preset) st = moe_tconfig_preset(&c, preset);
        /* --init DIR: the shape of the model it starts from, when DIR says (moe upcycle writes train.json) */
        if (!st && init) {
            char path[1024];
            snprintf(path, sizeof path, "%s/train.json", init);
            if (access(path, F_OK) == 0) st = moe_tconfig_load_file(&c, path);
        }
        if (!st && config) st = moe_tconfig_load_file(&c, config);
    }
    for (int i = 0; i < nf && !st; i++)
        if (vals[i]) st = moe_tconfig_set(&c, moe_tconfig_fields[i].name, vals[i]);
    if (!st && c.tokenizer[0] && !resume) st = fit_vocab(&c);
    if (!st) st = moe_tconfig_finish(&c);
    if (!st) st = moe_train_check_memory(&c);   /* before the output folder, the data or any allocation */
    if (!st && out) st = check_out(out, init, data, config, resume);
    /* the lock before any work: a second run on the same --out fails now, not at its first save */
    moe_outdir od = {0};
    od.lock_fd = -1;
    if (!st && out) st = moe_outdir_open(&od, "--out", out);
    if (!st && out && od.in_place && !quiet)
        fprintf(stderr, "moe train: note: --out %s cannot be swapped in whole (%s); each checkpoint replaces its files "
                        "one by one, config.json last\n", out, od.why);
    if (st) {
        if (st == MOE_EUSAGE) { fprintf(stderr, "moe train: %s\n", moe_last_error()); return 1; }
        return moe_cli_error(st);
    }
    moe_train_opts o = {data, out, out ? &od : NULL, init, resume, json, quiet, log_every, stop_after};
    moe_train_result res;
    st = moe_train(&c, &o, &res);
    moe_outdir_close(&od);
    if (st) return moe_cli_error(st);
    if (!quiet)
        fprintf(stderr, "moe train: %lld steps, train loss %.4f, held-out loss %.4f, %.1fk tok/s, load cv %.3f, "
                        "dropped %.2f%%, router entropy %.3f%s%s\n",
                (long long)res.steps, res.train_loss, res.val_loss, res.tok_per_s / 1e3, res.stats.load_cv,
                100 * res.stats.dropped, res.stats.entropy, out && !stop_after ? ", saved to " : "",
                out && !stop_after ? out : "");
    if (sample > 0 && (st = sample_text(out, prompt, sample, temperature, (uint64_t)c.seed)) != MOE_OK)
        return moe_cli_error(st);
    return 0;
}
