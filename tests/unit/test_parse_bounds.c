/* test_parse_bounds.c - the JSON and safetensors parsers never read past the bytes they are given.
 * Each input is placed so that it ends exactly where a PROT_NONE guard page begins, as a header
 * does when it ends at the end of an mmapped file; a read one byte too far is a SIGSEGV here, in
 * every build (ASan cannot see reads inside the uninstrumented libcjson). Every prefix of a valid
 * safetensors image and of a valid config.json is tried, plus inputs known to make cJSON look one
 * byte ahead (an object or array cut after a comma: CVE-2023-53154 in unpatched cJSON <= 1.7.17,
 * which moe_json_parse guards against by parsing a NUL-terminated copy). */
#include "io/json.h"
#include "io/safetensors.h"
#include "model/config.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int g_failures;
static uint8_t *g_area;   /* [page usable][page guard] */
static size_t g_page;

#define CHECK(cond, ...) do { if (!(cond)) { g_failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

/* Copy n bytes so that they end at the guard page; returns where they start. */
static const uint8_t *at_guard(const void *p, size_t n) {
    if (n > g_page) { fprintf(stderr, "input too long\n"); exit(2); }
    uint8_t *dst = g_area + g_page - n;
    memcpy(dst, p, n);
    return dst;
}

static void json_case(const char *text, size_t n, int expect_ok) {
    cJSON *root = NULL;
    const char *buf = (const char *)at_guard(text, n);
    moe_status st = moe_json_parse("t.json", buf, n, &root);
    CHECK((st == MOE_OK) == expect_ok, "moe_json_parse(\"%.*s\") returned %d: %s", (int)n, text, st, moe_last_error());
    CHECK(st == MOE_OK || root == NULL, "root set on failure");
    if (st != MOE_OK) CHECK(strstr(moe_last_error(), "t.json: ") == moe_last_error(), "message lacks the path: %s",
                            moe_last_error());
    cJSON_Delete(root);
}

static size_t put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
    return 8;
}

int main(void) {
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    g_area = mmap(NULL, 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_area == MAP_FAILED || mprotect(g_area + g_page, g_page, PROT_NONE) != 0) { perror("mmap"); return 2; }

    /* inputs that make cJSON peek one byte past the end */
    static const char *const peek[] = {"{\"a\":1,", "{\"a\":1, ", "[1,", "{", "[", "{\"a\"", "{\"a\":", "\"abc", "\"a\\",
                                       "\"\\u12", "[\"\\ud800\\u", "-", "1e", "tru", "nul", "{\"a\":[1,2],", "[[[[", "{\"a\":{"};
    for (size_t i = 0; i < sizeof peek / sizeof *peek; i++) json_case(peek[i], strlen(peek[i]), 0);
    json_case("{\"a\":1}", 7, 1);
    json_case("[1,2,3]  ", 9, 1);
    json_case("7", 1, 1);

    /* every prefix of a config.json: only the whole one is valid JSON */
    static const char cfg[] =
        "{\"model_type\": \"qwen3_moe\", \"vocab_size\": 32, \"hidden_size\": 8, \"intermediate_size\": 16,\n"
        " \"moe_intermediate_size\": 4, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,\n"
        " \"num_key_value_heads\": 1, \"head_dim\": 4, \"num_experts\": 4, \"num_experts_per_tok\": 2,\n"
        " \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}, \"mlp_only_layers\": [], \"name\": \"\\u00e9\\\"x\"}";
    size_t cfg_len = strlen(cfg);
    for (size_t n = 0; n <= cfg_len; n++) {
        cJSON *root = NULL;
        moe_status st = moe_json_parse("config.json", (const char *)at_guard(cfg, n), n, &root);
        CHECK((st == MOE_OK) == (n == cfg_len), "config prefix of %zu bytes: status %d", n, st);
        if (st == MOE_OK) {
            moe_config c;
            st = moe_config_parse("config.json", root, &c);
            CHECK(st == MOE_OK, "config.json did not parse: %s", moe_last_error());
            CHECK(st != MOE_OK || (c.n_experts == 4 && c.hidden == 8 && c.rope.factor == 4.0), "wrong values parsed");
        }
        cJSON_Delete(root);
    }

    /* every prefix of a safetensors image: two tensors, F32 [2] and BF16 [3] */
    static const char hdr[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]}}";
    uint8_t img[512];
    size_t hl = strlen(hdr), len = 0;
    len += put_u64(img, hl);
    memcpy(img + len, hdr, hl);
    len += hl;
    for (int i = 0; i < 14; i++) img[len++] = (uint8_t)(i * 37 + 1);
    for (size_t n = 0; n <= len; n++) {
        moe_st_file f;
        moe_status st = moe_st_parse("m.safetensors", at_guard(img, n), n, &f);
        CHECK((st == MOE_OK) == (n == len), "safetensors prefix of %zu bytes: status %d (%s)", n, st, moe_last_error());
        if (st == MOE_OK) {
            CHECK(f.n == 2 && f.tensors[1].dtype == MOE_BF16 && f.tensors[1].nbytes == 6 && f.tensors[1].shape[0] == 3,
                  "wrong tensor table");
            moe_st_clear(&f);
        } else {
            CHECK(strstr(moe_last_error(), "m.safetensors: ") == moe_last_error(), "message lacks the path: %s",
                  moe_last_error());
        }
    }
    /* a header that ends in a comma exactly at the guard page (the end of a mapped file) */
    static const char comma[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},";
    len = put_u64(img, strlen(comma));
    memcpy(img + len, comma, strlen(comma));
    len += strlen(comma);
    moe_st_file f;
    CHECK(moe_st_parse("m.safetensors", at_guard(img, len), len, &f) == MOE_EINPUT, "comma header accepted");

    munmap(g_area, 2 * g_page);
    if (g_failures) { printf("%d failures\n", g_failures); return 1; }
    printf("ok\n");
    return 0;
}
