/* cmd_run.c - `moe run MODEL -p TEXT`: text in, streamed text out.
 * The prompt is tokenized with the model's tokenizer.json (optionally wrapped in the model family's
 * chat format), prefilled in one batch, then tokens are sampled one at a time and printed as soon as
 * their characters are complete. Generation stops at an end-of-sequence token, a --stop string, -n
 * tokens, the context limit or Ctrl-C; prompt and generation speed go to stderr at the end.
 * Without -p and with --chat, turns are read from stdin and the KV cache carries the conversation;
 * when the next turn would not fit the context, the oldest turns are dropped (the cache is rebuilt
 * from the turns that still fit, the first of them formatted as the conversation's start) and a
 * line on stderr says so. A message that does not fit even alone is not sent, with a line saying so. */
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/offload.h"
#include "core/error.h"
#include "io/json.h"
#include "model/chat.h"
#include "model/sampler.h"
#include "moe.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_STOPS 8
#define MAX_EOS 16

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted++; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct run_state {
    moe_session *s;
    moe_tokenizer *tok;
    moe_sampler sampler;
    float *logits;
    int vocab;
    int32_t eos[MAX_EOS];
    int n_eos;
    const char *stops[MAX_STOPS];
    int n_stops;
    int max_new;
    /* totals for the speed report */
    int prompt_tokens, gen_tokens;
    double prompt_s, gen_s;
    /* interactive chat: the ids fed for the reply being generated */
    int32_t *reply;
    size_t n_reply, cap_reply;
} run_state;

static int is_eos(const run_state *r, int32_t id) {
    for (int i = 0; i < r->n_eos; i++)
        if (r->eos[i] == id) return 1;
    return 0;
}

static void add_eos(run_state *r, int32_t id) {
    if (id < 0 || is_eos(r, id) || r->n_eos == MAX_EOS) return;
    r->eos[r->n_eos++] = id;
}

static void add_eos_piece(run_state *r, const char *piece) {
    add_eos(r, moe_tokenizer_token_id(r->tok, piece, strlen(piece)));
}

/* Evaluate tokens in chunks so Ctrl-C is noticed during a long prompt. */
static moe_status feed(run_state *r, const int32_t *ids, size_t n) {
    double t0 = now();
    for (size_t i = 0; i < n; i += 256) {
        if (g_interrupted) return MOE_EINTERRUPTED;
        size_t m = n - i < 256 ? n - i : 256;
        if ((int)m > moe_session_max_ctx(r->s) - moe_session_pos(r->s))
            return moe_fail(MOE_EINPUT, "the prompt does not fit the context of %d tokens (use --ctx)", moe_session_max_ctx(r->s));
        MOE_TRY(moe_session_eval(r->s, ids + i, (int)m, r->logits, 0));
    }
    r->prompt_tokens += (int)n;
    r->prompt_s += now() - t0;
    return MOE_OK;
}

static moe_status feed_text(run_state *r, const char *text, int32_t bos) {
    int32_t *ids = NULL;
    size_t n = 0;
    MOE_TRY(moe_tokenizer_encode(r->tok, text, strlen(text), &ids, &n));
    if (bos >= 0) {
        int32_t *b = malloc(sizeof(int32_t) * (n + 1));
        if (!b) { free(ids); return moe_fail(MOE_ENOMEM, "out of memory"); }
        b[0] = bos;
        if (n) memcpy(b + 1, ids, sizeof(int32_t) * n);
        free(ids);
        ids = b;
        n++;
    }
    moe_status st = n ? feed(r, ids, n) : MOE_OK;
    free(ids);
    return st;
}

/* Length of the longest suffix of buf[0..n) that is a proper prefix of a stop string: those bytes
 * are held back until we know whether a stop string is being produced. */
static size_t held_back(const run_state *r, const char *buf, size_t n) {
    size_t best = 0;
    for (int i = 0; i < r->n_stops; i++) {
        size_t sl = strlen(r->stops[i]);
        for (size_t k = sl - 1; k > best; k--)
            if (k <= n && memcmp(buf + n - k, r->stops[i], k) == 0) { best = k; break; }
    }
    return best;
}

/* Sample and print until a stop condition. The last sampled token is fed so the cache holds it. */
static moe_status generate(run_state *r, FILE *out) {
    moe_detokenizer *dt;
    MOE_TRY(moe_detokenizer_new(r->tok, 1, &dt));
    char *pending = NULL;       /* printed-text candidates not yet shown (stop-string look-behind) */
    size_t np = 0, cap = 0;
    moe_status st = MOE_OK;
    double t0 = now();
    int produced = 0, stop_hit = 0;
    while (produced < r->max_new && !g_interrupted && !stop_hit) {
        int32_t id = moe_sampler_next(&r->sampler, r->logits);
        if (is_eos(r, id)) break;
        produced++;
        const char *text;
        size_t len;
        if ((st = moe_detokenizer_push(dt, id, &text, &len)) != MOE_OK) break;
        if (np + len + 1 > cap) {
            cap = (np + len + 1) * 2;
            char *p = realloc(pending, cap);
            if (!p) { st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
            pending = p;
        }
        if (len) memcpy(pending + np, text, len);
        np += len;
        pending[np] = 0;
        for (int i = 0; i < r->n_stops && !stop_hit; i++) {
            char *hit = strstr(pending, r->stops[i]);
            if (hit) { np = (size_t)(hit - pending); stop_hit = 1; }
        }
        size_t keep = stop_hit ? 0 : held_back(r, pending, np);
        fwrite(pending, 1, np - keep, out);
        if ((st = moe_cli_stdout_check()) != MOE_OK) break;   /* out is stdout: stop at a full disk or closed pipe */
        memmove(pending, pending + np - keep, keep);
        np = keep;
        if (moe_session_pos(r->s) >= moe_session_max_ctx(r->s)) {
            fprintf(stderr, "\nmoe run: context of %d tokens is full\n", moe_session_max_ctx(r->s));
            break;
        }
        if ((st = moe_session_eval(r->s, &id, 1, r->logits, 0)) != MOE_OK) break;
        if (r->n_reply == r->cap_reply) {   /* kept so that the chat can rebuild its cache */
            size_t c = r->cap_reply ? r->cap_reply * 2 : 256;
            int32_t *p = realloc(r->reply, sizeof *p * c);
            if (!p) { st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
            r->reply = p;
            r->cap_reply = c;
        }
        r->reply[r->n_reply++] = id;
    }
    if (st == MOE_OK && !stop_hit) {
        const char *text;
        size_t len;
        if (np) fwrite(pending, 1, np, out);
        if (moe_detokenizer_flush(dt, &text, &len) == MOE_OK && len) fwrite(text, 1, len, out);
    }
    fflush(out);
    r->gen_tokens += produced;
    r->gen_s += now() - t0;
    free(pending);
    moe_detokenizer_free(dt);
    return st;
}

/* chat_template from tokenizer_config.json or chat_template.jinja beside the model (NULL if neither
 * has one); a file that is there but cannot be read is an error, not a silent fallback. */
static moe_status read_chat_template(const char *dir, char **out) {
    char path[4096];
    struct stat sb;
    *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (stat(path, &sb) == 0) {
        cJSON *root;
        MOE_TRY(moe_json_parse_file(path, 64u << 20, &root));
        /* a list of named templates (older files) is not read: fall back as before */
        const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
        moe_status st = MOE_OK;
        if (cJSON_IsString(t) && !(*out = strdup(t->valuestring))) st = moe_fail(MOE_ENOMEM, "out of memory");
        cJSON_Delete(root);
        if (st || *out) return st;
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    size_t len;
    if (stat(path, &sb) == 0) MOE_TRY(moe_read_file(path, 16u << 20, out, &len));
    return MOE_OK;
}

/* Without a template, guess the family's format from its special tokens. */
static moe_chat_format guess_format(const moe_tokenizer *t, const char *model_type) {
    if (moe_tokenizer_token_id(t, "<|im_start|>", 12) >= 0) return MOE_CHAT_CHATML;
    if (moe_tokenizer_token_id(t, "<|start|>", 9) >= 0 && moe_tokenizer_token_id(t, "<|message|>", 11) >= 0)
        return MOE_CHAT_HARMONY;
    static const char user[] = "<\xef\xbd\x9cUser\xef\xbd\x9c>";
    if (moe_tokenizer_token_id(t, user, sizeof user - 1) >= 0) return MOE_CHAT_DEEPSEEK;
    if (!strcmp(model_type, "llama")) return MOE_CHAT_LLAMA2;
    if (!strcmp(model_type, "mistral") || !strcmp(model_type, "mixtral")) return MOE_CHAT_MISTRAL;
    return MOE_CHAT_PLAIN;
}

/* ---- interactive chat: the conversation so far, and making room for the next turn ---- */

typedef struct chat_rec { char *user; int32_t *reply; size_t n_reply; } chat_rec;
typedef struct chat_log {
    chat_rec *v;
    size_t n, cap;
    moe_chat_format fmt;
    const char *bos, *system;
} chat_log;

static void chat_log_free(chat_log *h) {
    for (size_t i = 0; i < h->n; i++) { free(h->v[i].user); free(h->v[i].reply); }
    free(h->v);
}

static moe_status text_tokens(run_state *r, const char *text, size_t *n) {
    int32_t *ids;
    MOE_TRY(moe_tokenizer_encode(r->tok, text, strlen(text), &ids, n));
    free(ids);
    return MOE_OK;
}

/* Tokens to feed for turn j of the log (user = NULL: the new message) as the first kept turn or not. */
static moe_status turn_tokens(run_state *r, const chat_log *h, const char *user, size_t j, int first, size_t *n) {
    char *turn = moe_chat_turn(h->fmt, h->bos, h->system, user ? user : h->v[j].user, first);
    if (!turn) return moe_fail(MOE_ENOMEM, "out of memory");
    size_t a = 0, b = 0;
    moe_status st = first ? MOE_OK : text_tokens(r, moe_chat_end_of_reply(h->fmt), &a);
    if (!st) st = text_tokens(r, turn, &b);
    free(turn);
    *n = a + b + (user ? 0 : h->v[j].n_reply);
    return st;
}

/* Before `user` is sent: if it does not fit after the conversation so far (with room for part of
 * the reply), drop the oldest turns and rebuild the cache from the rest. *first tells whether the
 * new message now opens the conversation; *skip that it does not fit even alone. */
static moe_status make_room(run_state *r, chat_log *h, const char *user, int *first, int *skip) {
    *skip = 0;
    size_t ctx = (size_t)moe_session_max_ctx(r->s), pos = (size_t)moe_session_pos(r->s), need;
    size_t reserve = (size_t)r->max_new < ctx / 4 ? (size_t)r->max_new : ctx / 4;
    if (reserve < 1) reserve = 1;
    MOE_TRY(turn_tokens(r, h, user, 0, *first, &need));
    if (pos + need + reserve <= ctx) return MOE_OK;
    size_t k = 0;   /* turns dropped */
    for (; k <= h->n; k++) {
        size_t total = 0, t;
        for (size_t j = k; j < h->n; j++) {
            MOE_TRY(turn_tokens(r, h, NULL, j, j == k, &t));
            total += t;
        }
        MOE_TRY(turn_tokens(r, h, user, 0, k == h->n, &t));
        if (total + t + reserve <= ctx) break;
    }
    if (k > h->n) {
        fprintf(stderr, "moe run: the message is %zu tokens, too long for the context of %zu tokens with room to "
                        "reply (use --ctx); not sent\n", need, ctx);
        *skip = 1;
        return MOE_OK;
    }
    if (k == 0) return MOE_OK;   /* the cache holds exactly the log, so this does not happen; nothing to drop */
    moe_session_reset(r->s);
    for (size_t j = k; j < h->n; j++) {
        char *turn = moe_chat_turn(h->fmt, h->bos, h->system, h->v[j].user, j == k);
        if (!turn) return moe_fail(MOE_ENOMEM, "out of memory");
        moe_status st = j == k ? MOE_OK : feed_text(r, moe_chat_end_of_reply(h->fmt), -1);
        if (!st) st = feed_text(r, turn, -1);
        free(turn);
        if (!st && h->v[j].n_reply) st = feed(r, h->v[j].reply, h->v[j].n_reply);
        MOE_TRY(st);
    }
    for (size_t j = 0; j < k; j++) { free(h->v[j].user); free(h->v[j].reply); }
    memmove(h->v, h->v + k, sizeof *h->v * (h->n - k));
    h->n -= k;
    *first = h->n == 0;
    fprintf(stderr, "moe run: the conversation outgrew the context of %zu tokens: dropped the oldest %zu turn%s\n", ctx, k,
            k == 1 ? "" : "s");
    return MOE_OK;
}

static moe_status chat_log_add(chat_log *h, const char *user, run_state *r) {
    if (h->n == h->cap) {
        size_t c = h->cap ? h->cap * 2 : 16;
        chat_rec *v = realloc(h->v, sizeof *v * c);
        if (!v) return moe_fail(MOE_ENOMEM, "out of memory");
        h->v = v;
        h->cap = c;
    }
    chat_rec *e = &h->v[h->n];
    if (!(e->user = strdup(user))) return moe_fail(MOE_ENOMEM, "out of memory");
    e->reply = r->reply;   /* the log takes the reply's ids */
    e->n_reply = r->n_reply;
    r->reply = NULL;
    r->n_reply = r->cap_reply = 0;
    h->n++;
    return MOE_OK;
}

static char *read_line(FILE *f) {
    size_t cap = 0;
    char *line = NULL;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) { free(line); return NULL; }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

int cmd_run(int argc, char **argv) {
    const char *prompt = NULL, *prompt_file = NULL, *system = NULL, *tok_path = NULL, *stop = NULL;
    int n_new = 256, chat = 0, ctx = 0, top_k = 40, seed = -1, no_bos = 0;
    double temp = 0.8, top_p = 0.95, min_p = 0.05;
    moe_cli_offload ol = {0};
    const moe_opt opts[] = {
        {"prompt", 'p', ARG_STR, &prompt, "TEXT", "prompt text", 0, 0},
        {"file", 'f', ARG_STR, &prompt_file, "FILE", "read the prompt from a file", 0, 0},
        {"n-predict", 'n', ARG_INT, &n_new, "N", "maximum tokens to generate (default 256)", 0, 1 << 24},
        {"temp", 0, ARG_FLOAT, &temp, "T", "temperature; 0 = greedy (default 0.8)", 0, 100},
        {"top-k", 0, ARG_INT, &top_k, "K", "keep the K most likely tokens; 0 = off (default 40)", 0, 1 << 24},
        {"top-p", 0, ARG_FLOAT, &top_p, "P", "keep the smallest set with probability mass P; 1 = off (default 0.95)", 0, 1},
        {"min-p", 0, ARG_FLOAT, &min_p, "M", "drop tokens below M x the top probability; 0 = off (default 0.05)", 0, 1},
        {"seed", 's', ARG_INT, &seed, "S", "random seed (default: from the clock, printed at the end)", 0, 2147483647},
        {"chat", 0, ARG_FLAG, &chat, NULL, "format the prompt as a chat turn; without -p, chat on stdin", 0, 0},
        {"system", 0, ARG_STR, &system, "TEXT", "system message for --chat", 0, 0},
        {"stop", 0, ARG_STR, &stop, "STR", "stop when the output contains STR (comma-free; repeatable as a|b)", 0, 0},
        {"ctx", 'c', ARG_INT, &ctx, "N", "context size in tokens (default: model's, at most 4096)", 1, 1 << 24},
        {"tokenizer", 0, ARG_STR, &tok_path, "PATH", "tokenizer.json to use (default: the one in MODEL)", 0, 0},
        {"no-bos", 0, ARG_FLAG, &no_bos, NULL, "do not prepend the BOS token to a plain prompt", 0, 0},
        MOE_CLI_OFFLOAD_OPTS(&ol),
        MOE_CLI_ROUTE_OPTS_SAMPLING(&ol),
        {0},
    };
    const moe_cmd_spec spec = {"run", "MODEL -p TEXT [options]",
                               "Generate text from a prompt, streaming it as it is produced.",
                               "Sampling applies top-k, then top-p, then min-p to the temperature-scaled\n"
                               "distribution. Generation stops at an end-of-sequence token (config.json eos_token_id,\n"
                               "the tokenizer's EOS, the chat format's end-of-turn token), a --stop string, -n tokens\n"
                               "or Ctrl-C. Prompt and generation speed are printed on stderr. --stop takes several\n"
                               "strings separated by '|'. Chat formats: see docs/CHAT.md.",
                               opts, 1, 1};
    const char *pos[1];
    int npos, rc = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == MOE_ARGS_HELP ? 0 : 1;
    if (prompt && prompt_file) { fprintf(stderr, "moe run: give -p or -f, not both (see moe run --help)\n"); return 1; }
    if (!prompt && !prompt_file && !chat) { fprintf(stderr, "moe run: a prompt is required: -p TEXT or -f FILE (see moe run --help)\n"); return 1; }

    run_state r;
    memset(&r, 0, sizeof r);
    r.max_new = n_new;
    char *stop_copy = stop ? strdup(stop) : NULL, *file_text = NULL, *template = NULL;
    char *save = NULL;
    for (char *t = stop_copy ? strtok_r(stop_copy, "|", &save) : NULL; t && r.n_stops < MAX_STOPS; t = strtok_r(NULL, "|", &save))
        r.stops[r.n_stops++] = t;
    moe_model *m = NULL;
    moe_status st = MOE_OK;
    if (prompt_file) {
        size_t len;
        st = moe_read_file(prompt_file, 64u << 20, &file_text, &len);
        prompt = file_text;
        size_t bad = st ? len : moe_utf8_check((const unsigned char *)file_text, len);
        if (!st && bad != len) st = moe_fail(MOE_EINPUT, "%s: not valid UTF-8 at byte %zu", prompt_file, bad);
        if (!st && strlen(file_text) != len) st = moe_fail(MOE_EINPUT, "%s: holds a NUL byte at byte %zu", prompt_file, strlen(file_text));
    } else if (prompt) {
        size_t len = strlen(prompt), bad = moe_utf8_check((const unsigned char *)prompt, len);
        if (bad != len) st = moe_fail(MOE_EINPUT, "-p: the prompt is not valid UTF-8 at byte %zu", bad);
    }
    if (!st) st = moe_cli_load_model(pos[0], &ol, &m);
    if (!st) st = moe_tokenizer_load(tok_path ? tok_path : pos[0], &r.tok);
    const moe_model_info *I = m ? moe_model_get_info(m) : NULL;
    if (!st && moe_tokenizer_vocab_size(r.tok) > I->vocab_size)
        st = moe_fail(MOE_EINPUT, "%s: the tokenizer has %d tokens but the model only %d", tok_path ? tok_path : pos[0],
                      moe_tokenizer_vocab_size(r.tok), I->vocab_size);
    if (!st) st = moe_session_new(m, ctx, &r.s);
    if (!st) {
        r.vocab = I->vocab_size;
        r.logits = malloc(sizeof(float) * (size_t)r.vocab);
        /* a clock seed is kept below 2^31 so the printed value reproduces the run with --seed */
        uint64_t sd = seed >= 0 ? (uint64_t)seed : (((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) & 0x7fffffff);
        moe_sampler_params sp = {temp, top_k, top_p, min_p, sd};
        if (!r.logits || moe_sampler_init(&r.sampler, &sp, r.vocab)) st = moe_fail(MOE_ENOMEM, "out of memory");
        /* rows past the tokenizer's vocabulary (padding) or holes in it have no text: never sample them */
        else if (moe_sampler_restrict_to_tokenizer(&r.sampler, r.tok))
            st = moe_fail(MOE_EINPUT, "%s: the tokenizer has no token for any of the model's %d ids", tok_path ? tok_path : pos[0],
                          r.vocab);
        seed = (int)sd;
    }
    if (!st) {
        for (int i = 0; i < I->n_eos; i++) add_eos(&r, I->eos_token_id[i]);
        add_eos(&r, moe_tokenizer_get_info(r.tok)->eos_id);
    }
    const moe_tokenizer_info *TI = r.tok ? moe_tokenizer_get_info(r.tok) : NULL;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);

    if (!st && !chat) {
        st = feed_text(&r, prompt, !no_bos && TI->add_bos ? TI->bos_id : -1);
        if (!st && r.prompt_tokens == 0) {
            /* an empty prompt (-p "", an empty -f file) leaves no logits to sample from: start from BOS */
            int32_t bos = TI->bos_id >= 0 ? TI->bos_id : I->bos_token_id;
            if (no_bos || bos < 0 || bos >= r.vocab)
                st = moe_fail(MOE_EUSAGE, "the prompt%s%s is empty and %s: give some text", prompt_file ? " file " : "",
                              prompt_file ? prompt_file : "", no_bos ? "--no-bos forbids starting from BOS"
                                                                     : "the model has no BOS token to start from");
            else
                st = feed(&r, &bos, 1);
        }
        if (!st) st = generate(&r, stdout);
        if (r.prompt_tokens) printf("\n");   /* nothing at all for a refused prompt */
        fflush(stdout);   /* the text ends before the speed report on stderr, also when both go to one file */
    } else if (!st) {
        st = read_chat_template(tok_path ? tok_path : pos[0], &template);
    }
    if (!st && chat) {
        moe_chat_format fmt = template ? moe_chat_detect(template) : guess_format(r.tok, I->model_type);
        if (fmt == MOE_CHAT_PLAIN && template == NULL) fmt = guess_format(r.tok, I->model_type);
#define FWBAR "\xef\xbd\x9c" /* U+FF5C, DeepSeek's special-token bar */
#define LOWBAR "\xe2\x96\x81" /* U+2581 */
        static const char deepseek_eos[] = "<" FWBAR "end" LOWBAR "of" LOWBAR "sentence" FWBAR ">";
        const char *end_tokens[] = {"<|im_end|>", "<|end|>", "<|return|>", "<|endoftext|>", "</s>", deepseek_eos, "<|eot_id|>"};
        for (size_t i = 0; i < sizeof end_tokens / sizeof *end_tokens; i++) add_eos_piece(&r, end_tokens[i]);
        const char *bos = TI->bos_id >= 0 ? moe_tokenizer_piece(r.tok, TI->bos_id, NULL) : NULL;
        int interactive = prompt == NULL, first = 1;
        chat_log hist = {NULL, 0, 0, fmt, bos, system};
        if (interactive && isatty(0))
            fprintf(stderr, "moe run: chat format %s; type a message, Ctrl-C stops a reply, Ctrl-D ends\n", moe_chat_name(fmt));
        while (!st) {
            char *line = NULL;
            if (interactive) {
                if (isatty(0)) fprintf(stderr, "> ");
                g_interrupted = 0;
                line = read_line(stdin);
                if (!line) break;
                if (!*line) { free(line); continue; }
            }
            int skip = 0;
            if (interactive && (st = make_room(&r, &hist, line, &first, &skip)) != MOE_OK) { free(line); break; }
            if (skip) { free(line); continue; }
            char *turn = moe_chat_turn(fmt, bos, system, interactive ? line : prompt, first);
            if (!turn) { free(line); st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
            if (!first) st = feed_text(&r, moe_chat_end_of_reply(fmt), -1);
            if (!st) st = feed_text(&r, turn, -1);
            free(turn);
            first = 0;
            r.n_reply = 0;
            if (!st) st = generate(&r, stdout);
            printf("\n");
            fflush(stdout);
            if (st == MOE_EINTERRUPTED && interactive) st = MOE_OK;
            if (!st && interactive) st = chat_log_add(&hist, line, &r);
            free(line);
            if (!interactive) break;
        }
        chat_log_free(&hist);
    }
    sigaction(SIGINT, &old, NULL);
    if (st == MOE_EINTERRUPTED || g_interrupted) { st = MOE_OK; fprintf(stderr, "moe run: interrupted\n"); }
    if (!st || r.prompt_tokens)
        fprintf(stderr, "moe run: prompt %d tokens in %.2f s (%.2f tok/s), generated %d tokens in %.2f s (%.2f tok/s), seed %d\n",
                r.prompt_tokens, r.prompt_s, r.prompt_s > 0 ? r.prompt_tokens / r.prompt_s : 0, r.gen_tokens, r.gen_s,
                r.gen_s > 0 ? r.gen_tokens / r.gen_s : 0, seed);
    if (ol.stats && m) moe_cli_print_stats(stderr, m, "run", (uint64_t)(r.prompt_tokens + r.gen_tokens), r.prompt_s + r.gen_s);
    if (st == MOE_EUSAGE) { fprintf(stderr, "moe run: %s\n", moe_last_error()); rc = 1; }
    else rc = st ? moe_cli_error(st) : 0;
    free(template);
    free(file_text);
    free(stop_copy);
    free(r.logits);
    free(r.reply);
    moe_sampler_free(&r.sampler);
    moe_session_free(r.s);
    moe_tokenizer_free(r.tok);
    moe_model_free(m);
    return rc;
}
