/* test_batch.c - moe_session_eval_batch (several sessions in one forward pass) against each session
 * run alone, on random qwen3_moe models (f32, bf16, f32 with the batch-level expert-choice router, and
 * f32 with dynamic routing and steering whose capacity makes the decision depend on the batch):
 *  - a schedule of steps where sequences join late, leave early, prefill long prompts (past the
 *    256-token chunk) beside single decoded tokens and short multi-token appends; every row of every
 *    sequence's logits agrees with the same sequence evaluated alone in the same pieces within
 *    REL_TOL = 1e-5 of the row's largest logit. Not bit for bit: the matrix kernels block their sums
 *    by the number of rows in a product, and a batch has more rows than one sequence. The tolerance
 *    is the one test_hf_logits allows between decoding token by token and a prefill, which differ for
 *    the same reason; the test prints both differences (batched ~1-2e-6, token by token ~2-3e-6);
 *  - a batch of one gives exactly the bits of moe_session_eval;
 *  - each session's routing hook hears only its own tokens (positions, counts, layers in order) and
 *    the same experts as alone (except where two scores tie to 1e-4), its hidden-state hook only its rows;
 *  - bad batches (a session twice, a token outside the vocabulary, a sequence past its context,
 *    sessions of two models, no tokens) fail with the right status and move no session.
 *  - a session reset in the middle and started again beside a session that continues gives its first
 *    logits again, and the other session's logits do not change (a recurrent state is per session);
 * Schedules are drawn from a fixed seed plus one fresh seed per run (printed; MOE_TEST_SEED=N replays it).
 * `test_batch DIR...` runs the same checks on existing model folders instead (the transformers 5 tests
 * call it on their hybrid and chunked-attention models); there the tolerance is FOLDER_TOL = 1e-4, the bar
 * against transformers, because random hybrid models amplify rounding (see run_model). */
#include "moe.h"
#include "unit/testgen.h"
#include "unit/testrand.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REL_TOL 1e-5
#define FOLDER_TOL 1e-4
#define NSEQ 6
#define NSTEP 10
#define CTX 512
#define MAXREC 4096

static int g_fail, g_checks;
static int g_own_scale;   /* folders given on the command line: tolerance FOLDER_TOL */
static double g_worst;

#define CHECK(cond, ...) do { g_checks++; if (!(cond)) { g_fail++; printf("FAIL: " __VA_ARGS__); printf("\n"); } } while (0)

/* What a session's hooks heard. */
typedef struct rec {
    int n;                      /* routing records */
    int layer[MAXREC], n_tok[MAXREC], pos0[MAXREC], k[MAXREC], E[MAXREC];
    int *experts;               /* concatenated expert ids */
    float *scores;              /* concatenated router scores */
    size_t ne, ns, cap_e, cap_s;
    long hidden_rows;
} rec;

static void on_route(void *user, const moe_routing *r) {
    rec *R = user;
    if (R->n >= MAXREC) return;
    int i = R->n++;
    R->layer[i] = r->layer;
    R->n_tok[i] = r->n_tokens;
    R->pos0[i] = r->pos[0];
    R->k[i] = r->top_k;
    R->E[i] = r->n_experts;
    for (int t = 1; t < r->n_tokens; t++)
        if (r->pos[t] != r->pos[0] + t) R->pos0[i] = -1000000;   /* positions must be consecutive */
    size_t ne = (size_t)r->n_tokens * r->top_k, ns = (size_t)r->n_tokens * r->n_experts;
    if (R->ne + ne > R->cap_e) { R->cap_e = (R->ne + ne) * 2; R->experts = realloc(R->experts, R->cap_e * sizeof(int)); }
    if (R->ns + ns > R->cap_s) { R->cap_s = (R->ns + ns) * 2; R->scores = realloc(R->scores, R->cap_s * sizeof(float)); }
    memcpy(R->experts + R->ne, r->expert, ne * sizeof(int));
    memcpy(R->scores + R->ns, r->scores, ns * sizeof(float));
    R->ne += ne;
    R->ns += ns;
}

static void on_hidden(void *user, const moe_hidden *h) { ((rec *)user)->hidden_rows += h->n_tokens; }

static void rec_free(rec *r) { free(r->experts); free(r->scores); }

/* The schedule: how many tokens each sequence appends at each step (0: absent). */
typedef struct plan {
    int add[NSTEP][NSEQ];
    int len[NSEQ];
    int32_t tok[NSEQ][CTX];
} plan;

static void make_plan(plan *p, int vocab) {
    static const int prompts[] = {1, 5, 33, 300, 2, 17};
    memset(p, 0, sizeof *p);
    for (int i = 0; i < NSEQ; i++) {
        int join = rint_(0, 3), leave = rint_(join + 2, NSTEP);
        for (int s = join; s < leave; s++) {
            int n = s == join ? prompts[(i + rint_(0, 5)) % 6] : (rint_(0, 4) == 0 ? rint_(2, 4) : 1);
            if (p->len[i] + n > CTX) break;
            p->add[s][i] = n;
            p->len[i] += n;
        }
        for (int t = 0; t < p->len[i]; t++) p->tok[i][t] = rint_(0, vocab - 1);
    }
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double mx = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        mx = d > mx ? d : mx;
        big = fabs(b[i]) > big ? fabs(b[i]) : big;
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
    }
    return big > 0 ? mx / big : mx;
}

/* Same calls in the same order; experts equal, or where they differ the alone run scored the two
 * experts within 1e-4 of each other (a tie that rounding may break either way). *first_tie becomes the
 * first position where a tie went the other way: from there on the two runs compute different things. */
static void compare_routes(const rec *a, const rec *b, int seq, const char *name, int *first_tie) {
    CHECK(a->n == b->n, "%s seq %d: %d routing calls batched, %d alone", name, seq, a->n, b->n);
    int n = a->n < b->n ? a->n : b->n, ties = 0;
    size_t eo = 0, so = 0;
    for (int i = 0; i < n; i++) {
        CHECK(a->layer[i] == b->layer[i] && a->n_tok[i] == b->n_tok[i] && a->pos0[i] == b->pos0[i] && a->k[i] == b->k[i] &&
              a->E[i] == b->E[i], "%s seq %d call %d: layer %d/%d, tokens %d/%d, pos %d/%d", name, seq, i, a->layer[i],
              b->layer[i], a->n_tok[i], b->n_tok[i], a->pos0[i], b->pos0[i]);
        if (a->n_tok[i] != b->n_tok[i] || a->k[i] != b->k[i] || a->E[i] != b->E[i]) return;
        int k = a->k[i], E = a->E[i];
        for (int t = 0; t < a->n_tok[i]; t++)
            for (int j = 0; j < k; j++) {
                int x = a->experts[eo + (size_t)t * k + j], y = b->experts[eo + (size_t)t * k + j];
                if (x == y) continue;
                const float *sc = b->scores + so + (size_t)t * E;
                int tie = x >= 0 && y >= 0 && x < E && y < E && fabsf(sc[x] - sc[y]) < 1e-4f;
                CHECK(tie, "%s seq %d layer %d token %d: expert %d batched, %d alone", name, seq, a->layer[i], t, x, y);
                ties += tie;
                if (tie && b->pos0[i] + t < *first_tie) *first_tie = b->pos0[i] + t;
            }
        eo += (size_t)a->n_tok[i] * k;
        so += (size_t)a->n_tok[i] * E;
    }
    if (ties) printf("note: %s seq %d: %d expert choices differ at tied scores\n", name, seq, ties);
}

static int run_model(const char *dir, const char *name, int expect_hooks, const moe_route_options *ro) {
    moe_model *m, *m2;
    if (moe_model_load(dir, &m) || moe_model_load(dir, &m2)) { printf("load %s: %s\n", dir, moe_last_error()); return 1; }
    if (ro && (moe_model_set_routing(m, ro) || moe_model_set_routing(m2, ro))) {
        printf("routing options %s: %s\n", name, moe_last_error());
        return 1;
    }
    const moe_model_info *I = moe_model_get_info(m);
    int V = I->vocab_size, L = I->n_layers;
    plan P;
    make_plan(&P, V);
    /* alone: each sequence in its own session, appended in the same pieces */
    float *alone[NSEQ], *batched[NSEQ];
    rec ra[NSEQ], rb[NSEQ];
    memset(ra, 0, sizeof ra);
    memset(rb, 0, sizeof rb);
    for (int i = 0; i < NSEQ; i++) {
        alone[i] = calloc((size_t)(P.len[i] + 1) * V, 4);
        batched[i] = calloc((size_t)(P.len[i] + 1) * V, 4);
        moe_session *s;
        if (moe_session_new(m, CTX, &s)) { printf("session: %s\n", moe_last_error()); return 1; }
        moe_session_set_route_hook(s, on_route, &ra[i]);
        moe_session_set_hidden_hook(s, on_hidden, &ra[i]);
        for (int st = 0, at = 0; st < NSTEP; st++) {
            int n = P.add[st][i];
            if (!n) continue;
            if (moe_session_eval(s, P.tok[i] + at, n, alone[i] + (size_t)at * V, 1)) {
                printf("alone eval: %s\n", moe_last_error());
                return 1;
            }
            at += n;
        }
        moe_session_free(s);
    }
    /* batched: all sequences present at a step go in one call */
    moe_session *S[NSEQ];
    int at[NSEQ] = {0};
    for (int i = 0; i < NSEQ; i++) {
        if (moe_session_new(m, CTX, &S[i])) { printf("session: %s\n", moe_last_error()); return 1; }
        moe_session_set_route_hook(S[i], on_route, &rb[i]);
        moe_session_set_hidden_hook(S[i], on_hidden, &rb[i]);
    }
    int max_rows = 0, max_seqs = 0;
    for (int st = 0; st < NSTEP; st++) {
        moe_batch_seq b[NSEQ];
        int nb = 0, rows = 0;
        for (int i = 0; i < NSEQ; i++) {
            int n = P.add[st][i];
            if (!n) continue;
            b[nb++] = (moe_batch_seq){S[i], P.tok[i] + at[i], n, batched[i] + (size_t)at[i] * V, 1};
            rows += n;
        }
        if (!nb) continue;
        max_rows = rows > max_rows ? rows : max_rows;
        max_seqs = nb > max_seqs ? nb : max_seqs;
        moe_status stt = moe_session_eval_batch(b, nb);
        CHECK(stt == MOE_OK, "%s step %d: %s", name, st, moe_last_error());
        for (int j = 0; j < nb; j++) {
            int i = 0;
            while (S[i] != b[j].session) i++;
            CHECK(moe_session_pos(S[i]) == at[i] + b[j].n_tokens, "%s step %d seq %d: position %d, want %d", name, st, i,
                  moe_session_pos(S[i]), at[i] + b[j].n_tokens);
            at[i] += b[j].n_tokens;
        }
    }
    /* for scale: the same sequences alone, prefilled at once against decoded one token at a time
     * (the engine's own, long-standing difference of kernel blocking) */
    double w_step = 0;
    for (int i = 0; i < NSEQ && expect_hooks; i++) {
        moe_session *s;
        float *l = malloc((size_t)V * 4);
        moe_session_new(m, CTX, &s);
        for (int t = 0; t < P.len[i]; t++) {
            moe_session_eval(s, P.tok[i] + t, 1, l, 0);
            double r = rel_diff(l, alone[i] + (size_t)t * V, (size_t)V);
            w_step = r > w_step ? r : w_step;
        }
        moe_session_free(s);
        free(l);
    }
    /* The tolerance: REL_TOL for the generated models; for folders given on the command line FOLDER_TOL,
     * the bar every architecture meets against transformers: random hybrid models amplify rounding
     * (linear attention's gated RMSNorm rescales rows that nearly cancel), so that their batched rows,
     * like their own token-by-token decode, land 1e-5 to 5e-5 from the rows alone, and the 4x of the
     * model's own decode distance is no stable yardstick either (it was 3e-6 in a run where batched
     * rows were 3e-5 off). A state shared between sequences is off by 0.1 to 1. */
    double tol = g_own_scale ? FOLDER_TOL : REL_TOL;
    double w_batch = 0;
    for (int i = 0; i < NSEQ; i++) {
        int first_tie = P.len[i];
        if (expect_hooks) compare_routes(&rb[i], &ra[i], i, name, &first_tie);
        if (first_tie < P.len[i])
            printf("note: %s seq %d: logits compared up to position %d, where a tied expert choice went the other way\n", name,
                   i, first_tie);
        for (int t = 0; t < first_tie; t++) {
            double r = rel_diff(batched[i] + (size_t)t * V, alone[i] + (size_t)t * V, (size_t)V);
            g_worst = r > g_worst ? r : g_worst;
            w_batch = r > w_batch ? r : w_batch;
            CHECK(r <= tol, "%s seq %d position %d: batched logits differ from alone by %.3g of the largest", name, i, t, r);
        }
        CHECK(rb[i].hidden_rows == (long)P.len[i] * L * 2 && ra[i].hidden_rows == rb[i].hidden_rows,
              "%s seq %d: hidden hook saw %ld rows batched, %ld alone, want %ld", name, i, rb[i].hidden_rows,
              ra[i].hidden_rows, (long)P.len[i] * L * 2);
    }
    if (expect_hooks)
        printf("%s: batched vs alone %.3g; for scale, alone token by token vs in pieces %.3g (tolerance %.3g)\n", name,
               w_batch, w_step, tol);
    else /* a batch-level router decides over each piece: token by token is another function */
        printf("%s: batched vs alone %.3g\n", name, w_batch);
    printf("%s: %d sequences, up to %d in a step with %d rows\n", name, NSEQ, max_seqs, max_rows);

    /* a batch of one is moe_session_eval, bit for bit */
    {
        moe_session *a, *c;
        moe_session_new(m, CTX, &a);
        moe_session_new(m, CTX, &c);
        float *la = malloc((size_t)40 * V * 4), *lc = malloc((size_t)40 * V * 4);
        moe_session_eval(a, P.tok[3], 40, la, 1);
        moe_batch_seq one = {c, P.tok[3], 40, lc, 1};
        CHECK(moe_session_eval_batch(&one, 1) == MOE_OK && !memcmp(la, lc, (size_t)40 * V * 4),
              "%s: a batch of one differs from moe_session_eval", name);
        moe_session_eval(a, P.tok[3] + 40, 1, la, 0);
        one = (moe_batch_seq){c, P.tok[3] + 40, 1, lc, 0};
        CHECK(moe_session_eval_batch(&one, 1) == MOE_OK && !memcmp(la, lc, (size_t)V * 4),
              "%s: a decoded token in a batch of one differs from moe_session_eval", name);

        /* bad batches move nobody */
        int32_t good[3] = {1, 2, 3}, bad[2] = {4, V};
        int pa = moe_session_pos(a), pc = moe_session_pos(c);
        moe_batch_seq two[2] = {{a, good, 3, NULL, 0}, {a, good, 3, NULL, 0}};
        CHECK(moe_session_eval_batch(two, 2) == MOE_EUSAGE, "%s: the same session twice was accepted", name);
        two[1] = (moe_batch_seq){c, bad, 2, NULL, 0};
        CHECK(moe_session_eval_batch(two, 2) == MOE_EINPUT && strstr(moe_last_error(), "batch sequence 1"),
              "%s: a token outside the vocabulary: %s", name, moe_last_error());
        two[1] = (moe_batch_seq){c, good, 0, NULL, 0};
        CHECK(moe_session_eval_batch(two, 2) == MOE_EUSAGE, "%s: a sequence without tokens was accepted", name);
        int32_t *many = calloc(CTX, sizeof(int32_t));
        two[1] = (moe_batch_seq){c, many, CTX - pc + 1, NULL, 0};
        CHECK(moe_session_eval_batch(two, 2) == MOE_EINPUT && strstr(moe_last_error(), "context"),
              "%s: a sequence past its context: %s", name, moe_last_error());
        moe_session *o;
        moe_session_new(m2, CTX, &o);
        two[1] = (moe_batch_seq){o, good, 3, NULL, 0};
        CHECK(moe_session_eval_batch(two, 2) == MOE_EUSAGE, "%s: sessions of two models were accepted", name);
        CHECK(moe_session_eval_batch(two, 0) == MOE_EUSAGE, "%s: an empty batch was accepted", name);
        CHECK(moe_session_pos(a) == pa && moe_session_pos(c) == pc && moe_session_pos(o) == 0,
              "%s: a refused batch moved a session", name);
        /* and a good one after them still matches */
        two[0] = (moe_batch_seq){a, good, 3, la, 0};
        two[1] = (moe_batch_seq){c, good, 3, lc, 0};
        CHECK(moe_session_eval_batch(two, 2) == MOE_OK && rel_diff(la, lc, (size_t)V) <= REL_TOL,
              "%s: two equal sessions in one batch disagree", name);
        free(many);
        moe_session_free(o);
        free(la);
        free(lc);
        moe_session_free(a);
        moe_session_free(c);
    }
    /* restart: the longest sequence's session is reset and its first piece evaluated again beside the
     * others' next token */
    {
        int lo = 0;
        for (int i = 1; i < NSEQ; i++) lo = P.len[i] > P.len[lo] ? i : lo;
        int n0 = 0;   /* its first piece again (a batch-level router decides over a piece) */
        for (int st = 0; st < NSTEP && !n0; st++) n0 = P.add[st][lo];
        moe_batch_seq b[NSEQ];
        int nb = 0;
        float *l0 = malloc((size_t)n0 * V * 4), *lo_next[NSEQ] = {0};
        moe_session_reset(S[lo]);
        b[nb++] = (moe_batch_seq){S[lo], P.tok[lo], n0, l0, 1};
        for (int i = 0; i < NSEQ; i++)
            if (i != lo && P.len[i] > 0 && at[i] < CTX) {
                lo_next[i] = malloc((size_t)V * 4);
                b[nb++] = (moe_batch_seq){S[i], P.tok[i], 1, lo_next[i], 0};
            }
        CHECK(moe_session_eval_batch(b, nb) == MOE_OK, "%s restart: %s", name, moe_last_error());
        double r = rel_diff(l0, alone[lo], (size_t)n0 * V);
        g_worst = r > g_worst ? r : g_worst;
        CHECK(r <= tol, "%s: seq %d reset and prefilled again in a batch differs from its first run by %.3g", name, lo, r);
        /* each continuing session against the same next token alone, after the same history */
        for (int i = 0; i < NSEQ; i++) {
            if (!lo_next[i]) continue;
            moe_session *s;
            float *want = malloc((size_t)V * 4);
            moe_session_new(m, CTX, &s);
            for (int st = 0, a = 0; st < NSTEP; st++)   /* in the same pieces as before */
                if (P.add[st][i]) { moe_session_eval(s, P.tok[i] + a, P.add[st][i], NULL, 0); a += P.add[st][i]; }
            moe_session_eval(s, P.tok[i], 1, want, 0);
            double ri = rel_diff(lo_next[i], want, (size_t)V);
            g_worst = ri > g_worst ? ri : g_worst;
            CHECK(ri <= tol, "%s: seq %d beside a restarted session differs from alone by %.3g", name, i, ri);
            moe_session_free(s);
            free(want);
            free(lo_next[i]);
        }
        free(l0);
    }
    for (int i = 0; i < NSEQ; i++) {
        moe_session_free(S[i]);
        free(alone[i]);
        free(batched[i]);
        rec_free(&ra[i]);
        rec_free(&rb[i]);
    }
    moe_model_free(m);
    moe_model_free(m2);
    return 0;
}

static void set_router(const char *dir, const char *router) {
    char path[700];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *end = strrchr(buf, '}');
    snprintf(end, sizeof buf - (size_t)(end - buf), ", \"moe_router\": \"%s\"}\n", router);
    f = fopen(path, "w");
    fputs(buf, f);
    fclose(f);
}

int main(int argc, char **argv) {
    const char *env = getenv("MOE_TEST_SEED");
    uint64_t seeds[2] = {12345, env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL)};
    printf("fresh seed %llu (MOE_TEST_SEED=%llu replays it)\n", (unsigned long long)seeds[1], (unsigned long long)seeds[1]);
    if (argc > 1) {   /* existing folders */
        g_own_scale = 1;
        for (int r = 0; r < 2; r++)
            for (int i = 1; i < argc; i++) {
                g_rng = seeds[r] * 31 + (uint64_t)i;
                if (run_model(argv[i], argv[i], 1, NULL)) return 1;
            }
        printf("worst relative difference batched vs alone: %.3g (tolerance %.0e)\n", g_worst, FOLDER_TOL);
        printf("%d checks, %d failed\n", g_checks, g_fail);
        return g_fail ? 1 : 0;
    }
    char dir[] = "/tmp/moe_batch_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char sub[600];
    /* dynamic routing with a capacity (a decision over the batch, so layers run per session) */
    static const moe_route_options dyn = {0.7, NULL, 0.01, 1.0, 1, "1:0", "0:3"};
    static const struct { const char *name; int bf16; const char *router; const moe_route_options *ro; } models[] = {
        {"f32", 0, NULL, NULL}, {"bf16", 1, NULL, NULL}, {"f32 expert_choice", 0, "expert_choice", NULL},
        {"f32 top-p, skip, capacity with reroute, disable, force", 0, NULL, &dyn}};
    for (int r = 0; r < 2; r++)
        for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
            g_rng = seeds[r] * 31 + k;
            snprintf(sub, sizeof sub, "%s/m%zu", dir, k);
            tg_model cfg = {64, 2, 4, 2, 16, 300, 8, 2, 32, models[k].bf16, (unsigned)(seeds[r] + k)};
            if (tg_write_qwen3_moe(sub, &cfg)) { printf("cannot write the test model: %s\n", moe_last_error()); return 1; }
            if (models[k].router) set_router(sub, models[k].router);
            if (run_model(sub, models[k].name, !models[k].router, models[k].ro)) return 1;
        }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) printf("could not remove %s\n", dir);
    printf("worst relative difference batched vs alone: %.3g (tolerance %.0e)\n", g_worst, REL_TOL);
    printf("%d checks, %d failed\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
