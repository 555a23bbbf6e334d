/* test_tokenize_stream.c - encoding in verified parts (src/io/tokenize_stream.h) gives exactly the ids
 * of one encode of the whole text: on tinyshakespeare and on mixed text with special tokens, with
 * the real tokenizers of $MOE_SHARED_DATA (qwen3, deepseek_v3, gptoss, llama2), through a file and
 * through memory, stopped early (eval --max-tokens) and through moe train's data loader; and with
 * small hand-made tokenizers whose pipelines make a cut unsafe (a normalizer that prepends to every
 * piece, a split pattern that spans newlines), where the verification must refuse the cut. */
#include "io/tokenize_stream.h"
#include "io/tokenizer_internal.h"
#include "train/data.h"
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fail;
#define CHECK(cond, ...) do { if (!(cond)) { g_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

typedef struct got { int32_t *v; size_t n, cap, stop_at; } got;

static moe_status collect(void *user, const int32_t *ids, size_t n, int *stop) {
    got *g = user;
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2;
        g->v = realloc(g->v, sizeof *g->v * g->cap);
    }
    memcpy(g->v + g->n, ids, sizeof *ids * n);
    g->n += n;
    *stop = g->stop_at && g->n >= g->stop_at;
    return MOE_OK;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = n > 0 ? fread(b, 1, (size_t)n, f) : 0;
    b[*len] = 0;
    fclose(f);
    return b;
}

/* Stream text (from memory, or from path if given) in parts of `part` bytes and compare with one encode. */
static size_t check_equal(const char *what, const moe_tokenizer *t, const char *text, size_t len, const char *path, size_t part) {
    int32_t *want;
    size_t nw;
    if (moe_tokenizer_encode(t, text, len, &want, &nw) != MOE_OK) { CHECK(0, "%s: whole encode: %s", what, moe_last_error()); return 0; }
    got g = {0};
    size_t cuts = 0;
    moe_tokenize_stream_opts o = {part, &cuts, 0};
    moe_status st = path ? moe_tokenize_file_stream(t, path, (size_t)1 << 30, &o, collect, &g)
                         : moe_tokenize_buffer_stream(t, what, text, len, &o, collect, &g);
    CHECK(st == MOE_OK, "%s: stream: %s", what, moe_last_error());
    size_t first = 0;
    while (first < nw && first < g.n && want[first] == g.v[first]) first++;
    CHECK(g.n == nw && first == nw, "%s: %zu streamed ids, %zu whole; first difference at id %zu", what, g.n, nw, first);
    /* stopped early: the first ids of the whole encode */
    got h = {0};
    h.stop_at = nw / 3 + 1;
    moe_tokenize_stream_opts o2 = {part, NULL, 0};
    st = moe_tokenize_buffer_stream(t, what, text, len, &o2, collect, &h);
    CHECK(st == MOE_OK && h.n >= h.stop_at && !memcmp(h.v, want, sizeof *want * h.stop_at),
          "%s: a stream stopped after %zu ids does not start as the whole encode", what, h.stop_at);
    free(h.v);
    free(g.v);
    free(want);
    return cuts;
}

static moe_tokenizer *load_json(const char *dir, const char *name, const char *json) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(json, f);
    fclose(f);
    moe_tokenizer *t = NULL;
    CHECK(moe_tokenizer_load(path, &t) == MOE_OK, "load %s: %s", name, moe_last_error());
    return t;
}

/* Lines of mixed text: letters, digits, spaces, multilingual, special tokens at line starts. */
static char *mixed_text(size_t *len) {
    static const char *lines[] = {
        "ROMEO: But soft, what light through yonder window breaks?\n", "  indented code(x, y) { return 42; }\n",
        "<|im_start|>assistant\nSure thing.<|im_end|>\n", "\n\n\n", "Zahlen 1234567 und \xc3\xbc" "ber 3.14159\n",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\n",
        "Emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd end\n", "\t\ttabs\tand  spaces   \n",
        "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>Hi\n", "don't won't they'll I'm\n",
        "x\n", "    \n", "A long line that keeps going and going without a newline for a while, more than the margin: ",
    };
    size_t cap = 1 << 20, n = 0;
    char *s = malloc(cap);
    unsigned r = 12345;
    while (n < cap - 8192) {
        r = r * 1103515245u + 12345u;
        const char *l = lines[(r >> 16) % (sizeof lines / sizeof *lines)];
        size_t k = strlen(l);
        memcpy(s + n, l, k);
        n += k;
    }
    s[n] = 0;
    *len = n;
    return s;
}

static void test_real(const char *shared) {
    char path[1024], text_path[1024];
    snprintf(text_path, sizeof text_path, "%s/tinyshakespeare.txt", shared);
    size_t len = 0, mlen = 0;
    char *text = read_all(text_path, &len), *mixed = mixed_text(&mlen);
    if (!text) { printf("skip: no %s\n", text_path); free(mixed); return; }
    static const char *names[] = {"qwen3", "deepseek_v3", "gptoss", "llama2"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/tokenizers/%s", shared, names[i]);
        moe_tokenizer *t;
        if (moe_tokenizer_load(path, &t) != MOE_OK) { CHECK(0, "load %s: %s", names[i], moe_last_error()); continue; }
        char what[128];
        snprintf(what, sizeof what, "%s tinyshakespeare", names[i]);
        size_t cuts = check_equal(what, t, text, len, NULL, 16384);
        size_t fcuts = check_equal(what, t, text, len, text_path, 65536);
        snprintf(what, sizeof what, "%s mixed text", names[i]);
        size_t mcuts = check_equal(what, t, mixed, mlen, NULL, 16384);
        printf("%-12s tinyshakespeare: %zu cuts (16 KiB parts), %zu from the file (64 KiB); mixed text: %zu cuts\n", names[i],
               cuts, fcuts, mcuts);
        if (i < 3) CHECK(cuts > 40 && mcuts > 20, "%s: a byte-level tokenizer should be cut (got %zu, %zu)", names[i], cuts, mcuts);
        moe_tokenizer_free(t);
    }
    /* moe train's loader: each split encoded as one text, in parts */
    snprintf(path, sizeof path, "%s/tokenizers/qwen3", shared);
    moe_tokenizer *t;
    moe_data d;
    if (moe_tokenizer_load(path, &t) == MOE_OK) {
        moe_status st = moe_data_load(text_path, 0.1, 64, 1 << 20, path, &d);
        CHECK(st == MOE_OK, "moe_data_load: %s", moe_last_error());
        size_t split = (size_t)((double)len * 0.9);
        while (split < len && ((unsigned char)text[split] & 0xC0) == 0x80) split++;
        int32_t *a, *b;
        size_t na, nb;
        moe_tokenizer_encode(t, text, split, &a, &na);
        moe_tokenizer_encode(t, text + split, len - split, &b, &nb);
        CHECK(!st && d.n_train == na && d.n == na + nb && !memcmp(d.tok, a, na * 4) && !memcmp(d.tok + na, b, nb * 4),
              "train data: %zu + %zu ids, want %zu + %zu", d.n_train, d.n - d.n_train, na, nb);
        if (!st) moe_data_free(&d);
        free(a);
        free(b);
        moe_tokenizer_free(t);
    }
    free(text);
    free(mixed);
}

static void test_unsafe(const char *dir) {
    const char *vocab = "\"vocab\":{\"?\":0,\"a\":1,\"b\":2,\"\\n\":3,\" \":4,\"\xe2\x96\x81\":5,\"A\":6,\"ab\":7,\"\\na\":8},"
                        "\"merges\":[\"a b\",\"\\n a\"]}}";
    char json[2048];
    size_t len = 0;
    char *text = malloc(1 << 18);
    for (int i = 0; len < (1 << 18) - 16; i++) {
        const char *l = i % 3 ? "ab ab a\n" : "A b\n";
        memcpy(text + len, l, strlen(l));
        len += strlen(l);
    }
    text[len] = 0;
    /* a normalizer that prepends to every piece: a cut would add a marker */
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},\"pre_tokenizer\":"
             "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\S+|\\\\s+\"},\"behavior\":\"Isolated\"},"
             "\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",%s", vocab);
    moe_tokenizer *t = load_json(dir, "prepend.json", json);
    if (t) {
        size_t cuts = check_equal("prepend normalizer", t, text, len, NULL, 4096);
        CHECK(cuts == 0, "prepend normalizer: %zu cuts taken, none is safe", cuts);
        moe_tokenizer_free(t);
    }
    /* a split pattern whose matches span a newline, and a merge across it */
    snprintf(json, sizeof json, "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[^\\\\n]*\\\\n[aA]?\"},"
             "\"behavior\":\"Isolated\"},\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",%s", vocab);
    t = load_json(dir, "span.json", json);
    if (t) {
        check_equal("pattern spanning newlines", t, text, len, NULL, 4096);
        moe_tokenizer_free(t);
    }
    /* Metaspace prepend_scheme "first": the parts after a cut are not the start of the text */
    snprintf(json, sizeof json, "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
             "\"prepend_scheme\":\"first\",\"split\":true},\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",%s", vocab);
    t = load_json(dir, "first.json", json);
    if (t) {
        size_t cuts = check_equal("metaspace first", t, text, len, NULL, 4096);
        CHECK(cuts > 10, "metaspace first: expected cuts, got %zu", cuts);
        moe_tokenizer_free(t);
    }
    /* bad UTF-8 far into a file: named with its offset */
    snprintf(json, sizeof json, "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",%s", vocab);
    t = load_json(dir, "plain.json", json);
    if (t) {
        char path[512];
        snprintf(path, sizeof path, "%s/bad.txt", dir);
        FILE *f = fopen(path, "wb");
        fwrite(text, 1, 200000, f);
        fputs("\xff", f);
        fclose(f);
        got g = {0};
        moe_tokenize_stream_opts o = {4096, NULL, 0};
        moe_status st = moe_tokenize_file_stream(t, path, 1 << 30, &o, collect, &g);
        char want[600];
        snprintf(want, sizeof want, "%s: not valid UTF-8 at byte 200000", path);
        CHECK(st == MOE_EINPUT && !strcmp(moe_last_error(), want), "bad UTF-8: \"%s\"", moe_last_error());
        free(g.v);
        moe_tokenizer_free(t);
    }
    free(text);
}

int main(void) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/moe_tkstream_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    test_unsafe(dir);
    const char *shared = getenv("MOE_SHARED_DATA");
    if (shared && *shared) test_real(shared);
    else printf("skip: MOE_SHARED_DATA not set, no real tokenizers\n");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) g_fail++;
    if (g_fail) { printf("%d failures\n", g_fail); return 1; }
    printf("tokenize stream: all checks passed\n");
    return 0;
}
