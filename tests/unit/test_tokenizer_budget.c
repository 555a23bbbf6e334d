/* test_tokenizer_budget.c - the work budget of an encode or decode (src/io/tokenizer_internal.h).
 * Hostile tokenizer.json files whose normalizers or decoders grow the text geometrically, or whose
 * split / replace patterns rescan the rest of the text at every match, must end in one error naming
 * the file and the stage, while ordinary growth (Replace " " by a 3-byte character, long runs that
 * one match covers) must still encode. The windowed regex search that makes the accounting possible
 * must find exactly the matches a search over the whole text finds: that is checked against plain
 * PCRE2 on random texts for the real tokenizers' patterns and for patterns that look far ahead. */
#include "io/tokenizer_internal.h"
#include "testrand.h"
#include "moe.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fail;
static char g_dir[64];

#define CHECK(cond, ...) do { if (!(cond)) { g_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Write a tokenizer.json over a byte-level-free vocab of single characters; returns the loaded tokenizer. */
static moe_tokenizer *load(const char *name, const char *normalizer, const char *pretok, const char *decoder) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":%s,"
               "\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",\"vocab\":{\"?\":0,\"a\":1,\"b\":2,\" \":3,"
               "\"\xe2\x96\x81\":4,\"aa\":5},\"merges\":[\"a a\"]}}",
            normalizer, pretok, decoder);
    fclose(f);
    moe_tokenizer *t = NULL;
    moe_status st = moe_tokenizer_load(path, &t);
    CHECK(st == MOE_OK, "load %s: %s", name, moe_last_error());
    return t;
}

/* A Sequence of n copies of step (a normalizer or decoder object), under key `list`. */
static char *chain(const char *list, const char *step, int n) {
    size_t cap = 64 + (strlen(step) + 1) * (size_t)n;
    char *s = malloc(cap);
    int k = snprintf(s, cap, "{\"type\":\"Sequence\",\"%s\":[", list);
    for (int i = 0; i < n; i++) k += snprintf(s + k, cap - (size_t)k, "%s%s", i ? "," : "", step);
    snprintf(s + k, cap - (size_t)k, "]}");
    return s;
}

static void expect_budget_error(moe_status st, const char *what, const char *ctx) {
    const char *msg = moe_last_error();
    CHECK(st == MOE_EINPUT, "%s: status %d, want an input error (%s)", ctx, st, msg);
    CHECK(strstr(msg, what) && strstr(msg, "work budget"), "%s: message \"%s\" lacks \"%s\"", ctx, msg, what);
    CHECK(!strncmp(msg, g_dir, strlen(g_dir)) && !strchr(msg, '\n'), "%s: message must be one line naming the file: %s", ctx, msg);
}

static void test_normalizer_growth(void) {
    /* 24 doublings: 4 bytes would become 64 MiB; the budget stops it at about 1 MiB */
    char *norm = chain("normalizers", "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aa\"}", 24);
    moe_tokenizer *t = load("norm_growth.json", norm, "null", "null");
    free(norm);
    if (!t) return;
    int32_t *ids = NULL;
    size_t n = 0;
    expect_budget_error(moe_tokenizer_encode(t, "aaaa", 4, &ids, &n), "normalizer output", "normalizer growth");
    free(ids);
    moe_tokenizer_free(t);
    /* a regex Replace that doubles does the same */
    norm = chain("normalizers", "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"a\"},\"content\":\"aa\"}", 30);
    t = load("norm_growth_re.json", norm, "null", "null");
    free(norm);
    if (t) {
        ids = NULL;
        /* the regex scanning the grown text may be what runs out first */
        expect_budget_error(moe_tokenizer_encode(t, "a", 1, &ids, &n), "exceeds", "regex normalizer growth");
        free(ids);
        moe_tokenizer_free(t);
    }
    /* ordinary growth passes: a space becomes a 3-byte character, then Prepend, on 200 KB */
    t = load("norm_ok.json",
             "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"},{\"type\":\"NFKC\"}]}",
             "null", "null");
    if (t) {
        size_t len = 200000;
        char *text = malloc(len);
        for (size_t i = 0; i < len; i++) text[i] = i % 3 ? ' ' : 'a';
        ids = NULL;
        moe_status st = moe_tokenizer_encode(t, text, len, &ids, &n);
        CHECK(st == MOE_OK && n == len + 1, "ordinary normalizer growth: %s, %zu ids", moe_last_error(), n);
        free(ids);
        free(text);
        moe_tokenizer_free(t);
    }
}

static void test_decoder_growth(void) {
    char *dec = chain("decoders", "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aa\"}", 24);
    moe_tokenizer *t = load("dec_growth.json", "null", "null", dec);
    free(dec);
    if (!t) return;
    const int32_t ids[4] = {1, 1, 1, 1};
    char *text = NULL;
    size_t len = 0;
    expect_budget_error(moe_tokenizer_decode(t, ids, 4, 0, &text, &len), "decoder output", "decoder growth");
    free(text);
    moe_detokenizer *d;
    if (moe_detokenizer_new(t, 0, &d) == MOE_OK) {
        const char *piece;
        moe_status st = moe_detokenizer_push(d, 1, &piece, &len);
        expect_budget_error(st, "decoder output", "streamed decoder growth");
        moe_detokenizer_free(d);
    }
    moe_tokenizer_free(t);
    /* a decoder that grows by a bounded factor decodes long inputs */
    t = load("dec_ok.json", "null", "null",
             "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aaaa\"},"
             "{\"type\":\"Fuse\"}]}");
    if (t) {
        size_t n = 100000;
        int32_t *many = malloc(sizeof *many * n);
        for (size_t i = 0; i < n; i++) many[i] = 5;   /* "aa" */
        moe_status st = moe_tokenizer_decode(t, many, n, 0, &text, &len);
        CHECK(st == MOE_OK && len == 8 * n, "bounded decoder growth: %s, %zu bytes", moe_last_error(), len);
        free(text);
        free(many);
        moe_tokenizer_free(t);
    }
}

static void test_regex_rescan(void) {
    /* Each match "a" first looks for a "b" anywhere ahead: linear per match, quadratic overall. */
    const char *split = "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a(?=[^b]*b)|a\"},\"behavior\":\"Isolated\",\"invert\":false}";
    moe_tokenizer *t = load("rescan.json", "null", split, "null");
    if (!t) return;
    size_t len = 200000;
    char *text = malloc(len + 1);
    memset(text, 'a', len);
    int32_t *ids = NULL;
    size_t n = 0;
    expect_budget_error(moe_tokenizer_encode(t, text, len, &ids, &n), "regex matching", "quadratic split");
    free(ids);
    /* the same pattern on a text where the lookahead ends soon is fine */
    for (size_t i = 0; i < len; i++) text[i] = i % 8 == 7 ? 'b' : 'a';
    ids = NULL;
    moe_status st = moe_tokenizer_encode(t, text, len, &ids, &n);
    CHECK(st == MOE_OK, "split with short lookaheads: %s", moe_last_error());
    free(ids);
    moe_tokenizer_free(t);
    /* in a Replace normalizer too */
    t = load("rescan_norm.json",
             "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"a(?=[^b]*b)\"},\"content\":\"b\"}", "null", "null");
    if (t) {
        memset(text, 'a', len);
        ids = NULL;
        expect_budget_error(moe_tokenizer_encode(t, text, len, &ids, &n), "regex matching", "quadratic replace");
        free(ids);
        moe_tokenizer_free(t);
    }
    /* one long match (a run of 300 KB of spaces under \s+(?!\S)) is linear work and passes */
    t = load("long_run.json", "null",
             "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+(?!\\\\S)|\\\\s+|a+\"},\"behavior\":\"Isolated\",\"invert\":false}",
             "null");
    if (t) {
        size_t big = 300000;
        char *sp = malloc(big);
        memset(sp, ' ', big);
        sp[big - 1] = 'a';
        ids = NULL;
        st = moe_tokenizer_encode(t, sp, big, &ids, &n);
        CHECK(st == MOE_OK, "a long run of spaces: %s", moe_last_error());
        free(ids);
        free(sp);
        moe_tokenizer_free(t);
    }
    free(text);
}

/* ---- the windowed search equals a search over the whole text ---- */

static int reference_spans(const tk_regex *re, const char *s, size_t n, size_t *out, int cap) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int k = 0;
    size_t pos = 0;
    while (pos <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] > ov[0]) {
            if (k < cap) { out[2 * k] = ov[0]; out[2 * k + 1] = ov[1]; }
            k++;
            pos = ov[1];
        } else {
            size_t q = ov[0] > pos ? ov[0] : pos;
            if (q >= n) break;
            pos = q + tk_utf8_len((unsigned char)s[q]);
        }
    }
    pcre2_match_data_free(md);
    return k;
}

static void test_windows_exact(void) {
    static const char *patterns[] = {
        /* GPT-2, Llama 3 / Qwen, DeepSeek-V3 digits and CJK */
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        "\\p{N}{1,3}", "[一-龥\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
        /* anchors, boundaries, lookarounds and matches longer than a window */
        "\\s+$", "^a+", "a+$", "\\b\\w+\\b", "(?<=a)b+", "x*", "\\d{3}(?=\\D|$)", ".{70}", "(?s).{1,200}?z",
        "a(?=[^b]*b)|a", "(?:ab)+(?!c)", "[^\\n]+\\n?", "(?m)a.*", "\\w+(?=\\s*\\n)",
    };
    static const char *alphabet[] = {"a", "b", "c", "x", "z", " ", "  ", "\n", "\r\n", "1", "23", "'s", "\xc3\xa9", "\xe4\xb8\xad",
                                     "\xf0\x9f\x98\x80", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "                                        ", ".", "ab"};
    /* MOE_TEST_SEED replays a run */
    g_rng = getenv("MOE_TEST_SEED") ? strtoull(getenv("MOE_TEST_SEED"), NULL, 10) : 0x5eedULL ^ ((uint64_t)getpid() << 20);
    printf("seed %llu\n", (unsigned long long)g_rng);
    size_t *want = malloc(sizeof *want * 2 * 8192);
    int checked = 0;
    for (size_t p = 0; p < sizeof patterns / sizeof *patterns; p++) {
        tk_regex re;
        if (tk_regex_compile("test", patterns[p], strlen(patterns[p]), &re) != MOE_OK) {
            CHECK(0, "pattern %zu does not compile: %s", p, moe_last_error());
            continue;
        }
        tk_ctx c;
        tk_ctx_init(&c, "test");
        for (int trial = 0; trial < 60; trial++) {
            char text[4096];
            size_t n = 0, target = (size_t)(rnd() % (trial < 30 ? 300 : 3000));
            while (n < target) {
                const char *w = alphabet[rnd() % (sizeof alphabet / sizeof *alphabet)];
                size_t l = strlen(w);
                if (n + l >= sizeof text) break;
                memcpy(text + n, w, l);
                n += l;
            }
            /* exactness, not the budget, is checked here: "a(?=[^b]*b)|a" is quadratic on a long run of
             * a's, which the default budget rightly refuses (seed 13707009773: 647 bytes) */
            tk_ctx_budget(&c, sizeof text * 64);
            moe_status st = tk_regex_find_all(&re, &c, text, n);
            int k = reference_spans(&re, text, n, want, 8192);
            CHECK(st == MOE_OK, "pattern %zu: %s", p, moe_last_error());
            int same = st == MOE_OK && (size_t)k == c.spans.n;
            for (int i = 0; same && i < k; i++) same = want[2 * i] == c.spans.v[i].start && want[2 * i + 1] == c.spans.v[i].end;
            CHECK(same, "pattern %zu /%s/ on %zu bytes: %zu windowed matches, %d over the whole text", p, patterns[p], n,
                  c.spans.n, k);
            checked++;
        }
        tk_ctx_free(&c);
        tk_regex_free(&re);
    }
    free(want);
    printf("windowed regex search: %d texts agree with whole-text search\n", checked);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/moe_tokbudget_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
    if (system(cmd) != 0) return 1;
    test_normalizer_growth();
    test_decoder_growth();
    test_regex_rescan();
    test_windows_exact();
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) g_fail++;
    if (g_fail) { printf("%d failures\n", g_fail); return 1; }
    printf("tokenizer budget: all checks passed\n");
    return 0;
}
