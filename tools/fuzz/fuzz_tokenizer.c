/* fuzz_tokenizer.c - libFuzzer harness for the tokenizer engine. The first byte picks a mode:
 *   0: the rest is a tokenizer.json (at most 64 KB): loading must fail cleanly or give a tokenizer
 *      that can encode and decode a sample text;
 *   1: the rest is text for a fixed byte-level tokenizer (regex split, added tokens): invalid UTF-8
 *      must be refused, valid text must decode back to itself, and the streaming decoder must
 *      give exactly the full decode;
 *   2: the rest is text for a fixed tokenizer using every other feature (NFC, Replace, Prepend,
 *      Digits, Metaspace, Punctuation, byte fallback, fused unk, lstrip / rstrip / single_word /
 *      normalized added tokens): encode and decode must succeed and give valid UTF-8;
 *   3: the rest is token ids (16 bits each) decoded by both, whole and streamed;
 *   4: the rest describes a chain of up to 16 normalizers and 16 decoders (Replace with a literal or
 *      a regex and a content of up to 15 bytes, Prepend, NFKC, Lowercase, Strip; Replace, Strip,
 *      Fuse, ByteFallback, Metaspace) and a text: chains that multiply the text must stop at the
 *      work budget with one line naming the file, and whatever succeeds must stay within it; the
 *      decoder chain also runs streamed (moe_detokenizer) on the encoded ids and on raw ids.
 * Invariant failures call __builtin_trap so that libFuzzer keeps the input. */
#include "io/tokenizer_internal.h"
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static moe_tokenizer *g_a, *g_b;

static void die(const char *what) {
    fprintf(stderr, "fuzz_tokenizer: %s (%s)\n", what, moe_last_error());
    __builtin_trap();
}

/* Append s to buf as a JSON string literal. */
static void jstr(tk_buf *b, const char *s) {
    tk_buf_put(b, "\"", 1);
    for (; *s; s++) {
        char e[8];
        if (*s == '"' || *s == '\\') { e[0] = '\\'; e[1] = *s; tk_buf_put(b, e, 2); }
        else tk_buf_put(b, s, 1);
    }
    tk_buf_put(b, "\"", 1);
}

static void jput(tk_buf *b, const char *s) { tk_buf_put(b, s, strlen(s)); }

static moe_tokenizer *build_a(void) {
    tk_buf b = {0};
    jput(&b, "{\"version\":\"1.0\",\"added_tokens\":["
             "{\"id\":0,\"content\":\"<|im_start|>\",\"special\":true,\"normalized\":false},"
             "{\"id\":0,\"content\":\"<|end|>\",\"special\":true,\"normalized\":false},"
             "{\"id\":0,\"content\":\"<think>\",\"special\":false,\"normalized\":false}],"
             "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
             "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
             "\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
             "\"behavior\":\"Isolated\",\"invert\":false},"
             "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
             "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int i = 0; i < 256; i++) {
        char s[8], num[16];
        s[tk_utf8_encode(tk_byte_to_cp((unsigned char)i), s)] = 0;
        if (i) jput(&b, ",");
        jstr(&b, s);
        snprintf(num, sizeof num, ":%d", i);
        jput(&b, num);
    }
    jput(&b, ",\"\xc4\xa0t\":256,\"he\":257,\"\xc4\xa0the\":258,\"in\":259,\"\xc4\xa0\xc4\xa0\":260,"
             "\"\xc4\xa0\xc4\xa0\xc4\xa0\xc4\xa0\":261,\"\xc3\xa4\xc2\xbd\":262},\"merges\":["
             "\"\xc4\xa0 t\",\"h e\",\"\xc4\xa0t he\",\"i n\",\"\xc4\xa0 \xc4\xa0\",\"\xc4\xa0\xc4\xa0 \xc4\xa0\xc4\xa0\","
             "\"\xc3\xa4 \xc2\xbd\"]}}");
    moe_tokenizer *t;
    if (tk_tokenizer_load_mem("fuzz_a.json", b.p, b.n, &t)) die("tokenizer A does not load");
    tk_buf_free(&b);
    return t;
}

static moe_tokenizer *build_b(void) {
    tk_buf b = {0};
    jput(&b, "{\"version\":\"1.0\",\"added_tokens\":["
             "{\"id\":0,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
             "{\"id\":0,\"content\":\"<L>\",\"lstrip\":true,\"normalized\":false},"
             "{\"id\":0,\"content\":\"<R>\",\"rstrip\":true,\"special\":true},"
             "{\"id\":0,\"content\":\"word\",\"single_word\":true,\"normalized\":true},"
             "{\"id\":0,\"content\":\" x\",\"normalized\":true}],"
             "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {3,}\"},\"content\":\"  \"},{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"}]},"
             "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
             "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true},"
             "{\"type\":\"Punctuation\",\"behavior\":\"Contiguous\"},"
             "{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"MergedWithNext\",\"invert\":true}]},"
             "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
             "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
             "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,\"vocab\":{\"<unk>\":0");
    for (int i = 0; i < 200; i++) {   /* bytes 200..255 have no <0xNN> token: unk for some characters */
        char s[32];
        snprintf(s, sizeof s, ",\"<0x%02X>\":%d", i, 1 + i);
        jput(&b, s);
    }
    jput(&b, ",\"\xe2\x96\x81\":201,\"a\":202,\"b\":203,\"\xe2\x96\x81" "a\":204,\"ab\":205,\"\xe2\x96\x81" "ab\":206,\"1\":207},"
             "\"merges\":[\"\xe2\x96\x81 a\",\"a b\",\"\xe2\x96\x81" "a b\",\"\xe2\x96\x81 ab\"]}}");
    moe_tokenizer *t;
    if (tk_tokenizer_load_mem("fuzz_b.json", b.p, b.n, &t)) die("tokenizer B does not load");
    tk_buf_free(&b);
    return t;
}

/* A failure message: one line that starts with the tokenizer's name. */
static void fuzz_message(const char *msg) {
    if (strncmp(msg, "fuzz_chain.json: ", 17) || strchr(msg, '\n')) die("a failure without a one-line message naming the file");
}

static int valid(const char *s, size_t n) { return moe_utf8_check((const unsigned char *)s, n) == n; }

/* Decode whole and streamed; they must agree (when `must_agree`) and be valid UTF-8. */
static void decode_both(const moe_tokenizer *t, const int32_t *ids, size_t n, int skip, int must_agree, const char *want,
                        size_t want_len) {
    char *text;
    size_t len;
    if (moe_tokenizer_decode(t, ids, n, skip, &text, &len)) die("decode failed");
    if (!valid(text, len)) die("decode gave invalid UTF-8");
    if (want && (len != want_len || memcmp(text, want, len))) die("decode(encode(text)) != text");
    moe_detokenizer *d;
    if (moe_detokenizer_new(t, skip, &d)) die("stream new");
    tk_buf all = {0};
    const char *s;
    size_t l;
    for (size_t i = 0; i < n; i++) {
        if (moe_detokenizer_push(d, ids[i], &s, &l)) die("stream push");
        if (!valid(s, l)) die("stream gave invalid UTF-8");
        tk_buf_put(&all, s, l);
    }
    if (moe_detokenizer_flush(d, &s, &l)) die("stream flush");
    tk_buf_put(&all, s, l);
    if (must_agree && (all.n != len || (len && memcmp(all.p, text, len)))) die("stream != decode");
    moe_detokenizer_free(d);
    tk_buf_free(&all);
    free(text);
}

static void encode_text(const moe_tokenizer *t, const char *s, size_t n, int round_trip) {
    int32_t *ids;
    size_t m;
    moe_status st = moe_tokenizer_encode(t, s, n, &ids, &m);
    if (!valid(s, n)) {
        if (st != MOE_EINPUT) die("invalid UTF-8 accepted");
        return;
    }
    if (st) die("encode failed on valid text");
    for (size_t i = 0; i < m; i++)
        if (ids[i] < 0 || ids[i] >= moe_tokenizer_vocab_size(t)) die("id out of range");
    decode_both(t, ids, m, 0, round_trip, round_trip ? s : NULL, n);
    decode_both(t, ids, m, 1, round_trip, NULL, 0);
    free(ids);
}

/* ---- mode 4: growth chains ---- */

static const char *const k_bits[] = {"a", "b", "aa", " ", "\xe2\x96\x81", "\xc3\xa9", "\xe4\xb8\xad", "\\n", "<0x61>", "ab"};
#define N_BITS (sizeof k_bits / sizeof *k_bits)

static size_t take(const uint8_t **p, const uint8_t *end) { return *p < end ? *(*p)++ : 0; }

/* A JSON string of up to 15 pieces drawn from k_bits. */
static void bits(tk_buf *b, const uint8_t **p, const uint8_t *end, size_t max_len) {
    size_t n = take(p, end) % (max_len + 1);
    jput(b, "\"");
    for (size_t i = 0; i < n; i++) jput(b, k_bits[take(p, end) % N_BITS]);
    jput(b, "\"");
}

static void replace_step(tk_buf *b, const uint8_t **p, const uint8_t *end) {
    int regex = take(p, end) & 1;
    jput(b, regex ? "{\"type\":\"Replace\",\"pattern\":{\"Regex\":" : "{\"type\":\"Replace\",\"pattern\":{\"String\":");
    if (regex) {
        static const char *const re[] = {"\"a\"", "\"a+\"", "\"a(?=[^b]*b)\"", "\"(?<=a)\"", "\"\\\\s\"", "\"$\"", "\".\""};
        jput(b, re[take(p, end) % (sizeof re / sizeof *re)]);
    } else {
        bits(b, p, end, 2);
    }
    jput(b, "},\"content\":");
    bits(b, p, end, 15);
    jput(b, "}");
}

/* The streaming decoder under a growing decoder chain: every push and the flush either succeed with
 * at most what the work budget allows for the bytes pushed so far, or fail as bad input with one line
 * naming the file; a failed stream is abandoned, as moe run does. */
static void stream_chain(const moe_tokenizer *t, const int32_t *ids, size_t n) {
    if (n > 512) n = 512;   /* each push runs the whole chain: keep a unit within the fuzzer's timeout */
    moe_detokenizer *dt;
    if (moe_detokenizer_new(t, 0, &dt)) die("stream new on a chain");
    uint64_t pushed = 0;
    const char *s;
    size_t l;
    moe_status st = MOE_OK;
    for (size_t i = 0; i < n && !st; i++) {
        size_t pl;
        moe_tokenizer_piece(t, ids[i], &pl);
        pushed += pl;
        if ((st = moe_detokenizer_push(dt, ids[i], &s, &l)) == MOE_OK &&
            l > TK_WORK_BASE + (uint64_t)TK_WORK_PER_BYTE * pushed + pushed)
            die("a streamed piece grew past the work budget");
    }
    if (!st && (st = moe_detokenizer_flush(dt, &s, &l)) == MOE_OK && l > TK_WORK_BASE + (uint64_t)TK_WORK_PER_BYTE * pushed + pushed)
        die("the stream's flush grew past the work budget");
    if (st) {
        if (st != MOE_EINPUT) die("a streamed decode failed with a status other than bad input");
        fuzz_message(moe_last_error());
    }
    moe_detokenizer_free(dt);
}

static void growth_chains(const uint8_t *d, size_t size) {
    const uint8_t *p = d, *end = d + size;
    tk_buf b = {0};
    size_t nn = take(&p, end) % 17, nd = take(&p, end) % 17;
    jput(&b, "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[");
    for (size_t i = 0; i < nn; i++) {
        if (i) jput(&b, ",");
        switch (take(&p, end) % 5) {
        case 0: case 1: replace_step(&b, &p, end); break;
        case 2: jput(&b, "{\"type\":\"Prepend\",\"prepend\":"); bits(&b, &p, end, 15); jput(&b, "}"); break;
        case 3: jput(&b, "{\"type\":\"NFKC\"}"); break;
        default: jput(&b, take(&p, end) & 1 ? "{\"type\":\"Lowercase\"}" : "{\"type\":\"Strip\"}"); break;
        }
    }
    jput(&b, "]},\"pre_tokenizer\":null,\"decoder\":{\"type\":\"Sequence\",\"decoders\":[");
    for (size_t i = 0; i < nd; i++) {
        if (i) jput(&b, ",");
        switch (take(&p, end) % 5) {
        case 0: case 1: replace_step(&b, &p, end); break;
        case 2: jput(&b, "{\"type\":\"Strip\",\"content\":\"a\",\"start\":1,\"stop\":1}"); break;
        case 3: jput(&b, take(&p, end) & 1 ? "{\"type\":\"Fuse\"}" : "{\"type\":\"ByteFallback\"}"); break;
        default: jput(&b, "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\"}"); break;
        }
    }
    jput(&b, "]},\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",\"vocab\":{\"?\":0,\"a\":1,\"b\":2,\" \":3,"
             "\"\xe2\x96\x81\":4,\"aa\":5,\"<0x61>\":6},\"merges\":[\"a a\"]}}");
    moe_tokenizer *t;
    if (tk_tokenizer_load_mem("fuzz_chain.json", b.p, b.n, &t)) die("a chain tokenizer does not load");
    tk_buf_free(&b);
    /* the text: one piece of k_bits per remaining byte, at most 128 (the budget grows with the text,
     * and an unoptimised build must still finish a maximal growth within the fuzzer's timeout) */
    tk_buf text = {0};
    for (int k = 0; p < end && k < 128; k++) {
        const char *bit = k_bits[take(&p, end) % N_BITS];
        tk_buf_put(&text, bit[0] == '\\' ? "\n" : bit, bit[0] == '\\' ? 1 : strlen(bit));
    }
    uint64_t budget = TK_WORK_BASE + (uint64_t)TK_WORK_PER_BYTE * text.n;
    int32_t *ids = NULL;
    size_t m = 0;
    moe_status st = moe_tokenizer_encode(t, text.p ? text.p : "", text.n, &ids, &m);
    if (st) {
        if (st != MOE_EINPUT) die("a chain failed with a status other than bad input");
        fuzz_message(moe_last_error());
    } else {
        if (m > budget) die("encode gave more ids than its budget allows bytes");
        char *out;
        size_t len, bytes = 0;
        for (size_t i = 0; i < m; i++) {
            size_t l;
            moe_tokenizer_piece(t, ids[i], &l);
            bytes += l;
        }
        st = moe_tokenizer_decode(t, ids, m, 0, &out, &len);
        if (st == MOE_OK) {
            if (len > TK_WORK_BASE + (uint64_t)TK_WORK_PER_BYTE * bytes + bytes) die("decode grew past its budget");
            free(out);
        } else {
            if (st != MOE_EINPUT) die("a decode failed with a status other than bad input");
            fuzz_message(moe_last_error());
        }
        stream_chain(t, ids, m);
        free(ids);
    }
    /* the decoder chain on ids the encoder would not give: what is left of the input, as 3-bit ids */
    int32_t raw[256];
    size_t nraw = 0;
    for (const uint8_t *q = d; q < end && nraw < 256; q++) raw[nraw++] = *q % 7;
    stream_chain(t, raw, nraw);
    tk_buf_free(&text);
    moe_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_a) { g_a = build_a(); g_b = build_b(); }
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: {
        if (n > 65536) return 0;
        moe_tokenizer *t;
        if (tk_tokenizer_load_mem("fuzz.json", s, n, &t) == MOE_OK) {
            static const char sample[] = "Hello wörld  12345 <s> <|im_start|>\n\t \xe2\x82\xac\xf0\x9f\x98\x80 don't";
            int32_t *ids;
            size_t m;
            moe_status st = moe_tokenizer_encode(t, sample, sizeof sample - 1, &ids, &m);
            if (st == MOE_OK) {
                if (m > TK_WORK_BASE + (uint64_t)TK_WORK_PER_BYTE * sizeof sample) die("encode gave more ids than its budget");
                char *text;
                size_t len;
                if (moe_tokenizer_decode(t, ids, m, 0, &text, &len) == MOE_OK) {   /* decoders may run out of budget */
                    free(text);
                    decode_both(t, ids, m, 0, 0, NULL, 0);
                } else if (strncmp(moe_last_error(), "fuzz.json: ", 11) || strchr(moe_last_error(), '\n')) {
                    die("decode failed without a one-line message naming the file");
                }
                free(ids);
            } else if (strncmp(moe_last_error(), "fuzz.json: ", 11) && strncmp(moe_last_error(), "text: ", 6)) {
                die("encode failed without a message naming the file");
            }
            /* every id of a small vocabulary through the decoders (their growth is budgeted too) */
            int nv = moe_tokenizer_vocab_size(t) < 256 ? moe_tokenizer_vocab_size(t) : 256;
            int32_t every[256];
            for (int i = 0; i < nv; i++) every[i] = i;
            char *text;
            size_t len;
            if (moe_tokenizer_decode(t, every, (size_t)nv, 0, &text, &len) == MOE_OK) free(text);
            else if (strncmp(moe_last_error(), "fuzz.json: ", 11) || strchr(moe_last_error(), '\n'))
                die("decode failed without a one-line message naming the file");
            moe_tokenizer_free(t);
        } else if (!moe_last_error()[0] || strchr(moe_last_error(), '\n')) {
            die("load failed without a one-line message");
        }
        break;
    }
    case 1: encode_text(g_a, s, n, 1); break;
    case 2: encode_text(g_b, s, n, 0); break;
    case 3: {
        size_t m = n / 2;
        int32_t *ids = malloc((m + 1) * sizeof *ids), *idb = malloc((m + 1) * sizeof *idb);
        for (size_t i = 0; i < m; i++) {
            unsigned v = (unsigned)data[1 + 2 * i] | (unsigned)data[2 + 2 * i] << 8;
            ids[i] = (int32_t)(v % (unsigned)moe_tokenizer_vocab_size(g_a));
            idb[i] = (int32_t)(v % (unsigned)moe_tokenizer_vocab_size(g_b));
        }
        decode_both(g_a, ids, m, 0, 1, NULL, 0);
        decode_both(g_a, ids, m, 1, 1, NULL, 0);
        decode_both(g_b, idb, m, 0, 0, NULL, 0);
        free(ids);
        free(idb);
        break;
    }
    case 4: growth_chains(data + 1, size - 1); break;
    }
    return 0;
}
