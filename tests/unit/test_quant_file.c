/* test_quant_file.c - the "moe_quant" metadata of quantized safetensors files: a valid table retypes
 * its tensors; every malformed table is refused with a message naming the file and the problem. */
#include "core/quant.h"
#include "io/quant_meta.h"
#include "io/safetensors.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(c, ...) do { if (!(c)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); fails++; } } while (0)

typedef struct { const char *name, *dtype; int r, c; } tdesc;

/* A safetensors image with the given tensors (zero bytes) and __metadata__.moe_quant = meta (if set). */
static uint8_t *make(const tdesc *t, int n, const char *meta, size_t *size) {
    cJSON *root = cJSON_CreateObject();
    if (meta) cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "__metadata__"), MOE_QUANT_META_KEY, meta);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t esz = !strcmp(t[i].dtype, "F32") ? 4 : 1, nb = (size_t)t[i].r * t[i].c * esz;
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON_AddStringToObject(e, "dtype", t[i].dtype);
        int sh[2] = {t[i].r, t[i].c};
        cJSON_AddItemToObject(e, "shape", cJSON_CreateIntArray(sh, 2));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *h = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t hl = strlen(h);
    *size = 8 + hl + off;
    uint8_t *buf = calloc(1, *size);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, hl);
    free(h);
    return buf;
}

/* Parse + apply; returns the status, leaves the parsed file in *f (caller clears). */
static moe_status load(const tdesc *t, int n, const char *meta, moe_st_file *f) {
    size_t size;
    uint8_t *buf = make(t, n, meta, &size);
    moe_status st = moe_st_parse("q.safetensors", buf, size, f);
    if (st == MOE_OK) st = moe_quant_meta_apply(f, buf, size);
    free(buf);
    return st;
}

static void expect_bad(const tdesc *t, int n, const char *meta, const char *msg) {
    moe_st_file f;
    moe_status st = load(t, n, meta, &f);
    CHECK(st == MOE_EINPUT && strstr(moe_last_error(), msg) && strstr(moe_last_error(), "q.safetensors"),
          "meta %s: status %d, message \"%s\", expected \"%s\"", meta, st, moe_last_error(), msg);
    moe_st_clear(&f);
}

int main(void) {
    CHECK(moe_quant_row_bytes(MOE_Q8_0, 32) == 34 && moe_quant_row_bytes(MOE_Q8_0, 33) == 68, "q8_0 row bytes");
    CHECK(moe_quant_row_bytes(MOE_Q4, 64) == 40 && moe_quant_row_bytes(MOE_Q4, 1) == 20, "q4 row bytes");
    CHECK(moe_quant_row_bytes(MOE_F32, 64) == 0, "f32 is not quantized");
    const tdesc ok[3] = {{"a", "U8", 2, 34}, {"b", "U8", 3, 40}, {"c", "F32", 2, 2}};
    const char *good = "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, 32], \"b\": [\"q4\", 3, 64]}}";
    moe_st_file f;
    moe_status st = load(ok, 3, good, &f);
    CHECK(st == MOE_OK, "valid table refused: %s", moe_last_error());
    if (st == MOE_OK) {
        CHECK(f.tensors[0].dtype == MOE_Q8_0 && f.tensors[0].shape[0] == 2 && f.tensors[0].shape[1] == 32 &&
              f.tensors[0].nbytes == 68, "a not retyped to q8_0 [2, 32]");
        CHECK(f.tensors[1].dtype == MOE_Q4 && f.tensors[1].shape[1] == 64, "b not retyped to q4 [3, 64]");
        CHECK(f.tensors[2].dtype == MOE_F32, "c changed");
        moe_st_clear(&f);
    }
    /* no metadata: untouched */
    st = load(ok, 3, NULL, &f);
    CHECK(st == MOE_OK && f.tensors[0].dtype == MOE_U8, "file without metadata changed");
    moe_st_clear(&f);

    expect_bad(ok, 3, "{\"version\": 2, \"tensors\": {}}", "\"version\" must be 1");
    expect_bad(ok, 3, "{\"tensors\": {}}", "\"version\" must be 1");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {}, \"extra\": 0}", "unknown field \"extra\"");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": []}", "\"tensors\" must be an object");
    expect_bad(ok, 3, "[1]", "is not a JSON object");
    expect_bad(ok, 3, "{\"version\": 1", "");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, 32], \"a\": [\"q8_0\", 2, 32]}}", "");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": \"q8_0\"}}", "must be [type, rows, cols]");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2]}}", "must be [type, rows, cols]");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, 32, 1]}}", "must be [type, rows, cols]");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 0, 32]}}", "positive sizes");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, -32]}}", "positive sizes");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, 31.5]}}", "positive sizes");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, 1e300]}}", "positive sizes");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q3\", 2, 32]}}", "unknown type \"q3\"");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [7, 2, 32]}}", "unknown type");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"zz\": [\"q8_0\", 2, 32]}}", "\"zz\", which is not in the file");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"c\": [\"q8_0\", 2, 2]}}", "should be U8");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 2, 33]}}", "should be U8 [2, 68]");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q8_0\", 3, 32]}}", "should be U8 [3, 34]");
    expect_bad(ok, 3, "{\"version\": 1, \"tensors\": {\"a\": [\"q4\", 2, 32]}}", "should be U8 [2, 20]");
    if (fails) { printf("%d failures\n", fails); return 1; }
    printf("ok\n");
    return 0;
}
