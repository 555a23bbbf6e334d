/* test_tokenizer.c - the tokenizer engine on small hand-made tokenizer.json files: BPE merge order,
 * unk / byte fallback rules, added tokens, the lossy UTF-8 conversion, the streaming decoder (text
 * comes out only when characters are complete), and every load / encode / decode error path (one
 * message naming the file, no crash). Expected ids for the BPE corner cases were produced by
 * Hugging Face tokenizers 0.22 on the same JSON. With $MOE_SHARED_DATA it also streams real
 * tokenizers' ids and compares with the full decode. */
#include "io/tokenizer_internal.h"
#include "moe.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fail;
static char g_dir[64];

#define CHECK(cond, ...) do { if (!(cond)) { g_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static const char *write_file(const char *name, const char *fmt, ...) {
    static char path[4][256];
    static int k;
    char *p = path[k++ & 3];
    snprintf(p, 256, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    return p;
}

/* A JSON string literal for s (escapes quotes, backslashes and control bytes). */
static void json_str(char *out, const char *s) {
    *out++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { *out++ = '\\'; *out++ = (char)c; }
        else if (c < 0x20) out += sprintf(out, "\\u%04x", c);
        else *out++ = (char)c;
    }
    *out++ = '"';
    *out = 0;
}

static const char *k_tail = "\"truncation\":null,\"padding\":null,\"post_processor\":null";

/* A BPE model over the given vocab/merges JSON fragments. */
static moe_tokenizer *load_bpe(const char *name, const char *vocab, const char *merges, const char *extra_model,
                               const char *added, const char *normalizer, const char *pretok, const char *decoder) {
    const char *p = write_file(name,
                               "{\"version\":\"1.0\",%s,\"added_tokens\":[%s],\"normalizer\":%s,\"pre_tokenizer\":%s,"
                               "\"decoder\":%s,\"model\":{\"type\":\"BPE\",\"dropout\":null,%s\"vocab\":{%s},\"merges\":[%s]}}",
                               k_tail, added, normalizer, pretok, decoder, extra_model, vocab, merges);
    moe_tokenizer *t = NULL;
    moe_status st = moe_tokenizer_load(p, &t);
    CHECK(st == MOE_OK, "load %s: %s", name, moe_last_error());
    return t;
}

static void expect_ids(moe_tokenizer *t, const char *text, const char *want) {
    int32_t *ids;
    size_t n;
    moe_status st = moe_tokenizer_encode(t, text, strlen(text), &ids, &n);
    CHECK(st == MOE_OK, "encode \"%s\": %s", text, moe_last_error());
    if (st) return;
    char got[1024] = "";
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof got - 16; i++) k += (size_t)sprintf(got + k, "%s%d", i ? "," : "", ids[i]);
    CHECK(!strcmp(got, want), "encode \"%s\": got [%s], want [%s]", text, got, want);
    free(ids);
}

static void test_bpe_rules(void) {
    const char *v = "\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5";
    /* a duplicated merge takes its later rank */
    moe_tokenizer *t = load_bpe("dup1.json", v, "\"a b\",\"b c\",\"a b\"", "", "", "null", "null", "null");
    if (t) { expect_ids(t, "abc", "0,4"); expect_ids(t, "abcabc", "0,4,0,4"); moe_tokenizer_free(t); }
    t = load_bpe("dup2.json", v, "\"b c\",\"a b\",\"b c\"", "", "", "null", "null", "null");
    if (t) { expect_ids(t, "abc", "3,2"); moe_tokenizer_free(t); }
    t = load_bpe("chain.json", v, "[\"b\",\"c\"],[\"a\",\"bc\"],[\"a\",\"b\"],[\"ab\",\"c\"]", "", "", "null", "null", "null");
    if (t) { expect_ids(t, "abc", "5"); moe_tokenizer_free(t); }
    /* ignore_merges: a word in the vocab is taken whole */
    t = load_bpe("ig.json", v, "\"a b\"", "\"ignore_merges\":true,", "", "null", "null", "null");
    if (t) { expect_ids(t, "abc", "5"); moe_tokenizer_free(t); }
    /* unknown characters: fused or not */
    const char *vu = "\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,\"<unk>\":6";
    t = load_bpe("unk.json", vu, "\"a b\"", "\"unk_token\":\"<unk>\",\"fuse_unk\":false,", "", "null", "null", "null");
    if (t) { expect_ids(t, "axxbyab", "0,6,6,1,6,3"); moe_tokenizer_free(t); }
    t = load_bpe("fuse.json", vu, "\"a b\"", "\"unk_token\":\"<unk>\",\"fuse_unk\":true,", "", "null", "null", "null");
    if (t) { expect_ids(t, "axxbyab", "0,6,1,6,3"); moe_tokenizer_free(t); }
    /* byte fallback leaves a pending unk pending (tokenizers' order) */
    const char *vb = "\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,\"<unk>\":6,\"<0x78>\":7";
    t = load_bpe("bf.json", vb, "\"a b\"", "\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,", "", "null", "null", "null");
    if (t) { expect_ids(t, "ayxyxab", "0,7,7,6,3"); expect_ids(t, "\xc3\xa9" "a", "6,0"); moe_tokenizer_free(t); }
    /* continuing_subword_prefix and end_of_word_suffix */
    const char *vs = "\"a\":0,\"##b\":1,\"##c\":2,\"a##b\":3,\"ab\":4,\"c</w>\":5,\"b</w>\":6,\"##c</w>\":7,\"##b</w>\":8,\"a</w>\":9";
    t = load_bpe("csp.json", vs, "\"a ##b\"", "\"continuing_subword_prefix\":\"##\",", "", "null", "null", "null");
    if (t) { expect_ids(t, "abc", "4,2"); moe_tokenizer_free(t); }
    t = load_bpe("both.json", vs, "", "\"continuing_subword_prefix\":\"##\",\"end_of_word_suffix\":\"</w>\",", "", "null", "null", "null");
    if (t) { expect_ids(t, "abc", "0,1,7"); expect_ids(t, "a", "9"); moe_tokenizer_free(t); }
}

static void test_added_tokens(void) {
    /* vocab: one id per character, an unk; added tokens with every flag (ids from tokenizers) */
    const char *chars = "abcdefghijklmnopqrstuvwxyz _1<>|";
    char vocab[2048] = "";
    size_t k = 0;
    int id = 0;
    for (const char *c = chars; *c; c++) {
        char lit[16], key[2] = {*c, 0};
        json_str(lit, key);
        k += (size_t)sprintf(vocab + k, "%s%s:%d", id ? "," : "", lit, id);
        id++;
    }
    k += (size_t)sprintf(vocab + k, ",\"\xc3\xa9\":%d,\"[UNK]\":%d", id, id + 1);   /* é, then 33 = [UNK] */
    const char *added =
        "{\"id\":99,\"content\":\"ab\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":false},"
        "{\"id\":99,\"content\":\"<x>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":false,\"special\":false},"
        "{\"id\":99,\"content\":\"<y>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":true,\"normalized\":false,\"special\":true},"
        "{\"id\":99,\"content\":\"a\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":false}";
    moe_tokenizer *t = load_bpe("added.json", vocab, "", "\"unk_token\":\"[UNK]\",", added, "null", "null", "null");
    if (!t) return;
    /* new ids start at the vocab's entry count (34); "a" keeps its vocab id; file ids are ignored */
    CHECK(moe_tokenizer_token_id(t, "ab", 2) == 34 && moe_tokenizer_token_id(t, "<x>", 3) == 35 &&
          moe_tokenizer_token_id(t, "<y>", 3) == 36 && moe_tokenizer_token_id(t, "a", 1) == 0, "added token ids");
    CHECK(moe_tokenizer_vocab_size(t) == 37, "vocab size %d", moe_tokenizer_vocab_size(t));
    CHECK(moe_tokenizer_is_special(t, 36) && !moe_tokenizer_is_special(t, 35), "special flags");
    expect_ids(t, "ab", "34");
    expect_ids(t, "xab", "23,0,1");            /* single_word: a letter before */
    expect_ids(t, "ab_", "0,1,27");            /* ... or an underscore after */
    expect_ids(t, "ab ab", "34,26,34");
    expect_ids(t, "\xc3\xa9" "ab", "32,0,1");  /* é is a word character */
    expect_ids(t, "\xc2\xbd" "ab", "33,34");   /* ½ is not (No, not alphabetic) */
    expect_ids(t, "  <x>  ", "35,26,26");      /* lstrip takes the spaces before */
    expect_ids(t, "<y>  b", "36,1");           /* rstrip the spaces after */
    expect_ids(t, "<y>  <x>", "36,35");        /* spaces already taken are not taken twice */
    char *text;
    int32_t ids[] = {36, 0, 35, 1};
    CHECK(moe_tokenizer_decode(t, ids, 4, 1, &text, NULL) == MOE_OK && !strcmp(text, "a <x> b"), "decode skip: \"%s\"", text);
    free(text);
    CHECK(moe_tokenizer_decode(t, ids, 4, 0, &text, NULL) == MOE_OK && !strcmp(text, "<y> a <x> b"), "decode: \"%s\"", text);
    free(text);
    moe_tokenizer_free(t);
}

static void test_lossy(void) {
    struct { const char *in; size_t n; const char *want; int incomplete; } cases[] = {
        {"abc", 3, "abc", 0},
        {"\xe2\x82\xac", 3, "\xe2\x82\xac", 0},
        {"\xe2\x82", 2, "\xef\xbf\xbd", 1},                        /* cut off: one U+FFFD, incomplete */
        {"a\xf0\x9f\x98", 4, "a\xef\xbf\xbd", 1},
        {"\xe2\x82" "A", 3, "\xef\xbf\xbd" "A", 0},                /* maximal subpart: one U+FFFD */
        {"\xe0\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd", 0},            /* E0 80 is two invalid parts */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 0},   /* a surrogate */
        {"\x80\xbf", 2, "\xef\xbf\xbd\xef\xbf\xbd", 0},
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 0},   /* > U+10FFFF */
        {"\xff", 1, "\xef\xbf\xbd", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tk_buf b = {0};
        int inc = -1;
        tk_utf8_lossy(&b, (const unsigned char *)cases[i].in, cases[i].n, &inc);
        tk_buf_put(&b, "", 0);
        CHECK(b.n == strlen(cases[i].want) && !memcmp(b.p, cases[i].want, b.n) && inc == cases[i].incomplete,
              "lossy case %zu: got %zu bytes, incomplete %d", i, b.n, inc);
        tk_buf_free(&b);
    }
    CHECK(tk_utf8_incomplete_tail((const unsigned char *)"a\xf0\x9f\x98", 4) == 3, "incomplete tail");
    CHECK(tk_utf8_incomplete_tail((const unsigned char *)"a\xe2\x82\xac", 4) == 0, "complete tail");
    for (int b = 0; b < 256; b++) CHECK(tk_cp_to_byte(tk_byte_to_cp((unsigned char)b)) == b, "byte table %d", b);
}

/* Push ids one by one; return the concatenated stream text and check each piece is valid UTF-8
 * and that nothing comes out while a character is unfinished (when want_empty_until > 0). */
static char *stream_all(moe_tokenizer *t, const int32_t *ids, size_t n, int skip, size_t *emits_at, size_t cap) {
    moe_detokenizer *d;
    if (moe_detokenizer_new(t, skip, &d)) return NULL;
    tk_buf all = {0};
    tk_buf_put(&all, "", 0);
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        moe_status st = moe_detokenizer_push(d, ids[i], &s, &len);
        CHECK(st == MOE_OK, "push: %s", moe_last_error());
        CHECK(moe_utf8_check((const unsigned char *)s, len) == len, "stream piece %zu is not valid UTF-8", i);
        if (emits_at && i < cap) emits_at[i] = len;
        tk_buf_put(&all, s, len);
    }
    const char *s;
    size_t len;
    CHECK(moe_detokenizer_flush(d, &s, &len) == MOE_OK, "flush");
    tk_buf_put(&all, s, len);
    moe_detokenizer_free(d);
    return all.p;
}

static void test_stream_small(void) {
    /* SentencePiece style: byte fallback for characters outside the vocab */
    char vocab[8192];
    size_t k = (size_t)sprintf(vocab, "\"<unk>\":0,\"<s>\":1,\"</s>\":2");
    for (int b = 0; b < 256; b++) k += (size_t)sprintf(vocab + k, ",\"<0x%02X>\":%d", b, 3 + b);
    sprintf(vocab + k, ",\"\xe2\x96\x81\":259,\"a\":260,\"b\":261,\"\xe2\x96\x81" "a\":262,\"ab\":263");
    const char *added = "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}";
    moe_tokenizer *t = load_bpe("sp.json", vocab, "\"\xe2\x96\x81 a\",\"a b\"", "\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,", added,
                               "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
                               "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]}",
                               "null",
                               "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
                               "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}");
    if (!t) return;
    const char *text = "ab \xe2\x82\xac a\xf0\x9f\x98\x80";   /* "ab € a😀" */
    expect_ids(t, text, "262,261,259,229,133,175,262,243,162,155,131");
    int32_t *ids;
    size_t n;
    if (moe_tokenizer_encode(t, text, strlen(text), &ids, &n) == MOE_OK) {
        size_t at[16] = {0};
        char *s = stream_all(t, ids, n, 0, at, 16);
        CHECK(s && !strcmp(s, text), "stream: \"%s\"", s ? s : "(null)");
        /* ids: ▁a b ▁ E2 82 AC ▁a F0 9F 98 80: text only after the last byte of each character */
        CHECK(at[0] == 1 && at[1] == 1 && at[3] == 0 && at[4] == 0 && at[5] == 3 && at[7] == 0 && at[8] == 0 &&
              at[9] == 0 && at[10] == 4, "stream emitted %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu", at[0], at[1], at[2],
              at[3], at[4], at[5], at[6], at[7], at[8], at[9], at[10]);
        free(s);
        free(ids);
    }
    /* an unfinished character at the end comes out as U+FFFD on flush, like the full decode */
    int32_t cut[] = {262, 229, 133};
    char *full, *s = stream_all(t, cut, 3, 0, NULL, 0);
    CHECK(moe_tokenizer_decode(t, cut, 3, 0, &full, NULL) == MOE_OK && s && !strcmp(s, full) &&
          !strcmp(full, "a\xef\xbf\xbd\xef\xbf\xbd"), "flush of an unfinished character: \"%s\"", s ? s : "(null)");
    free(full);
    free(s);
    /* special tokens: kept or skipped, the leading space strip still applies once */
    int32_t sp[] = {1, 262, 1, 262};
    s = stream_all(t, sp, 4, 1, NULL, 0);
    CHECK(s && !strcmp(s, "a a"), "stream skip special: \"%s\"", s ? s : "(null)");
    free(s);
    s = stream_all(t, sp, 4, 0, NULL, 0);
    CHECK(s && !strcmp(s, "<s> a<s> a"), "stream with special: \"%s\"", s ? s : "(null)");
    free(s);
    moe_tokenizer_free(t);
}

static void test_stream_real(void) {
    const char *dir = getenv("MOE_SHARED_DATA");
    if (!dir || !*dir) { printf("skip: MOE_SHARED_DATA not set, no real tokenizers\n"); return; }
    const char *names[] = {"qwen3", "deepseek_v3", "llama2", "gptoss"};
    /* BOS/EOS from tokenizer_config.json (ids as tokenizers' token_to_id gives them) */
    const int want_bos[] = {-1, 0, 1, 199998}, want_eos[] = {151645, 1, 2, 200002}, want_add_bos[] = {0, 1, 1, 0};
    const char *text = "Hello, world! Ünïcödé テキスト 😀👍🏽👨‍👩‍👧 <|im_start|>x\n\n  indented\tcode();  \xe2\x82\xac 1234567";
    for (int k = 0; k < 4; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", dir, names[k]);
        if (access(path, R_OK)) { printf("skip: %s\n", path); continue; }
        moe_tokenizer *t;
        if (moe_tokenizer_load(path, &t)) { CHECK(0, "load %s: %s", path, moe_last_error()); continue; }
        const moe_tokenizer_info *in = moe_tokenizer_get_info(t);
        CHECK(in->bos_id == want_bos[k] && in->eos_id == want_eos[k] && in->add_bos == want_add_bos[k] && !in->add_eos,
              "%s: bos %d eos %d add_bos %d add_eos %d", names[k], in->bos_id, in->eos_id, in->add_bos, in->add_eos);
        int32_t *ids;
        size_t n;
        CHECK(moe_tokenizer_encode(t, text, strlen(text), &ids, &n) == MOE_OK, "encode %s", names[k]);
        for (int skip = 0; skip < 2; skip++) {
            char *full, *s = stream_all(t, ids, n, skip, NULL, 0);
            CHECK(moe_tokenizer_decode(t, ids, n, skip, &full, NULL) == MOE_OK && s && !strcmp(s, full),
                  "%s stream (skip %d) differs from decode", names[k], skip);
            if (!skip) CHECK(!strcmp(full, text), "%s round trip: \"%s\"", names[k], full);
            free(s);
            free(full);
        }
        free(ids);
        /* random ids through byte-level decoders: the stream must still equal the full decode */
        if (k != 2) {
            int32_t rnd[3000];
            uint64_t x = 88172645463325252ull + (uint64_t)k;
            int vs = moe_tokenizer_vocab_size(t);
            for (int i = 0; i < 3000; i++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                /* mostly single-byte tokens, so that characters split across tokens are frequent */
                int32_t id = (x >> 32) % 4 ? (int32_t)((x >> 8) % 256) : (int32_t)((x >> 16) % (uint64_t)vs);
                rnd[i] = moe_tokenizer_piece(t, id, NULL) ? id : 0;
            }
            char *full, *s = stream_all(t, rnd, 3000, 0, NULL, 0);
            CHECK(moe_tokenizer_decode(t, rnd, 3000, 0, &full, NULL) == MOE_OK && s && !strcmp(s, full),
                  "%s: stream of random ids differs from decode", names[k]);
            free(s);
            free(full);
        }
        moe_tokenizer_free(t);
    }
}

/* A load that must fail with one line naming the file and containing `what`. */
static void expect_load_error(const char *name, const char *what, const char *json) {
    const char *p = write_file(name, "%s", json);
    moe_tokenizer *t = (moe_tokenizer *)1;
    moe_status st = moe_tokenizer_load(p, &t);
    const char *msg = moe_last_error();
    CHECK(st == MOE_EINPUT && t == NULL, "%s: loaded (status %d)", name, st);
    CHECK(strstr(msg, p) && strstr(msg, what) && !strchr(msg, '\n'), "%s: message \"%s\" lacks \"%s\"", name, msg, what);
}

static void test_errors(void) {
    const char *ok_model = "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}";
    char buf[4096];
    moe_tokenizer *t = (moe_tokenizer *)1;
    CHECK(moe_tokenizer_load("/nonexistent/tokenizer.json", &t) == MOE_EINPUT && !t, "missing file");
    CHECK(strstr(moe_last_error(), "/nonexistent/tokenizer.json") != NULL, "missing file message: %s", moe_last_error());
    expect_load_error("trunc.json", "malformed JSON", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":");
    expect_load_error("notutf8.json", "UTF-8", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xff\":0},\"merges\":[]}}");
    expect_load_error("array.json", "must be a JSON object", "[1,2]");
    expect_load_error("nomodel.json", "model", "{\"normalizer\":null}");
    expect_load_error("unigram.json", "Unigram", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}");
    expect_load_error("vocabtype.json", "vocab", "{\"model\":{\"type\":\"BPE\",\"vocab\":[1,2],\"merges\":[]}}");
    expect_load_error("idtype.json", "id of token", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}}");
    expect_load_error("bigid.json", "id of token", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}}");
    expect_load_error("negid.json", "id of token", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}");
    expect_load_error("merge3.json", "merges[0]", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b c\"]}}");
    expect_load_error("mergemiss.json", "not in the vocab", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}");
    expect_load_error("mergetype.json", "merges[0]", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}");
    expect_load_error("dropout.json", "dropout", "{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}");
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"}}", ok_model);
    expect_load_error("badregex.json", "bad regex", buf);
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[a&&b]\"},\"behavior\":\"Isolated\"}}", ok_model);
    expect_load_error("intersect.json", "intersection", buf);
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":\"x\",\"behavior\":\"Isolated\"}}", ok_model);
    expect_load_error("pattype.json", "pattern", buf);
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"x\"},\"behavior\":\"Sideways\"}}", ok_model);
    expect_load_error("behavior.json", "Sideways", buf);
    snprintf(buf, sizeof buf, "{%s,\"normalizer\":{\"type\":\"Precompiled\"}}", ok_model);
    expect_load_error("precompiled.json", "Precompiled", buf);
    snprintf(buf, sizeof buf, "{%s,\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":{}}}", ok_model);
    expect_load_error("seqtype.json", "normalizers", buf);
    snprintf(buf, sizeof buf, "{%s,\"decoder\":{\"type\":\"WordPiece\"}}", ok_model);
    expect_load_error("wordpiece.json", "WordPiece", buf);
    snprintf(buf, sizeof buf, "{%s,\"decoder\":{\"type\":\"Strip\",\"content\":\"ab\"}}", ok_model);
    expect_load_error("stripchar.json", "one character", buf);
    snprintf(buf, sizeof buf, "{%s,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"prepend_scheme\":\"sometimes\"}}", ok_model);
    expect_load_error("scheme.json", "sometimes", buf);
    snprintf(buf, sizeof buf, "{%s,\"added_tokens\":[{\"content\":5}]}", ok_model);
    expect_load_error("addedtype.json", "added_tokens[0]", buf);
    snprintf(buf, sizeof buf, "{%s,\"added_tokens\":[{\"content\":\"x\",\"special\":\"yes\"}]}", ok_model);
    expect_load_error("addedflag.json", "special", buf);
    snprintf(buf, sizeof buf, "{%s,\"normalizer\":%s}", ok_model,
             "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":"
             "[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":"
             "[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":"
             "[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":"
             "[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":"
             "[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":"
             "[]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}]}");
    expect_load_error("deep.json", "nested too deeply", buf);
    /* a folder without tokenizer.json */
    CHECK(moe_tokenizer_load(g_dir, &t) == MOE_EINPUT && !t && strstr(moe_last_error(), "tokenizer.json"), "folder: %s", moe_last_error());
    /* a malformed tokenizer_config.json beside a good file */
    write_file("tokenizer.json", "{%s}", ok_model);
    write_file("tokenizer_config.json", "{\"bos_token\": 3}");
    CHECK(moe_tokenizer_load(g_dir, &t) == MOE_EINPUT && strstr(moe_last_error(), "tokenizer_config.json") &&
          strstr(moe_last_error(), "bos_token"), "config: %s", moe_last_error());
    write_file("tokenizer_config.json", "{\"bos_token\": {\"content\": \"ab\"}, \"eos_token\": \"a\", \"add_bos_token\": true}");
    if (moe_tokenizer_load(g_dir, &t) == MOE_OK) {
        const moe_tokenizer_info *in = moe_tokenizer_get_info(t);
        CHECK(in->bos_id == 2 && in->eos_id == 0 && in->add_bos && !in->add_eos, "bos/eos %d %d", in->bos_id, in->eos_id);
        /* encode and decode errors */
        int32_t *ids;
        size_t n;
        CHECK(moe_tokenizer_encode(t, "a\xff" "b", 3, &ids, &n) == MOE_EINPUT && strstr(moe_last_error(), "UTF-8"),
              "non-UTF-8 text: %s", moe_last_error());
        CHECK(moe_tokenizer_encode(t, "a\xe2\x82", 3, &ids, &n) == MOE_EINPUT, "truncated UTF-8 text");
        CHECK(moe_tokenizer_encode(t, "", 0, &ids, &n) == MOE_OK && n == 0, "empty text");
        free(ids);
        int32_t bad[] = {0, 99};
        char *text;
        CHECK(moe_tokenizer_decode(t, bad, 2, 0, &text, NULL) == MOE_EINPUT && strstr(moe_last_error(), "99"), "bad id: %s", moe_last_error());
        bad[1] = -5;
        CHECK(moe_tokenizer_decode(t, bad, 2, 0, &text, NULL) == MOE_EINPUT, "negative id");
        moe_detokenizer *d;
        const char *s;
        if (moe_detokenizer_new(t, 0, &d) == MOE_OK) {
            CHECK(moe_detokenizer_push(d, 1000, &s, NULL) == MOE_EINPUT, "stream bad id");
            moe_detokenizer_free(d);
        }
        CHECK(moe_tokenizer_piece(t, 2, NULL) && !strcmp(moe_tokenizer_piece(t, 2, NULL), "ab") && !moe_tokenizer_piece(t, 3, NULL) &&
              !moe_tokenizer_piece(t, -1, NULL), "pieces");
        moe_tokenizer_free(t);
    } else CHECK(0, "load with config: %s", moe_last_error());
    /* unk_token missing from the vocab fails at encode time, as in tokenizers */
    t = load_bpe("unkmiss.json", "\"a\":0", "", "\"unk_token\":\"<unk>\",", "", "null", "null", "null");
    if (t) {
        int32_t *ids;
        size_t n;
        CHECK(moe_tokenizer_encode(t, "a", 1, &ids, &n) == MOE_OK, "unk not needed");
        free(ids);
        CHECK(moe_tokenizer_encode(t, "ax", 2, &ids, &n) == MOE_EINPUT && strstr(moe_last_error(), "<unk>"), "unk missing: %s", moe_last_error());
        moe_tokenizer_free(t);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/moe_test_tok_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_bpe_rules();
    test_added_tokens();
    test_lossy();
    test_stream_small();
    test_stream_real();
    test_errors();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", g_dir);
    if (g_fail) { printf("%d checks failed\n", g_fail); return 1; }
    printf("tokenizer: all checks passed\n");
    return 0;
}
