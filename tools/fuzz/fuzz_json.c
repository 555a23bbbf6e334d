/* fuzz_json.c - arbitrary bytes through moe_json_parse and every typed getter: each member of the
 * top-level object (and of the objects one level down) is read as an integer over several ranges,
 * as a number, a boolean and a string. A getter either succeeds with a value inside the range
 * asked for, or fails with one message naming the file. */
#include "fuzz_common.h"
#include "io/json.h"
#include <math.h>
#include <stdint.h>

static void read_all(const char *path, const cJSON *obj) {
    static const int64_t ranges[][2] = {{INT64_MIN, INT64_MAX}, {0, INT64_MAX}, {1, 1 << 20}, {-5, 5}, {0, 0}};
    for (const cJSON *e = obj->child; e; e = e->next) {
        const char *key = e->string;
        for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
            int64_t v;
            if (moe_json_int(path, obj, key, MOE_JSON_REQUIRED, 0, ranges[i][0], ranges[i][1], &v) == MOE_OK)
                FUZZ_ASSERT(v >= ranges[i][0] && v <= ranges[i][1]);
            else
                fuzz_check_message(path);
        }
        int i32;
        if (moe_json_int32(path, obj, key, MOE_JSON_OPTIONAL, 7, -100, 1 << 30, &i32) == MOE_OK)
            FUZZ_ASSERT(i32 >= -100 && i32 <= (1 << 30));
        else
            fuzz_check_message(path);
        double d;
        if (moe_json_num(path, obj, key, MOE_JSON_REQUIRED, 0, -1e300, 1e300, &d) == MOE_OK)
            FUZZ_ASSERT(isfinite(d) && d >= -1e300 && d <= 1e300);
        else
            fuzz_check_message(path);
        int b;
        if (moe_json_bool(path, obj, key, MOE_JSON_REQUIRED, 0, &b) == MOE_OK) FUZZ_ASSERT(b == 0 || b == 1);
        else fuzz_check_message(path);
        const char *s;
        if (moe_json_str(path, obj, key, MOE_JSON_REQUIRED, NULL, &s) == MOE_OK) FUZZ_ASSERT(s != NULL);
        else fuzz_check_message(path);
    }
    if (!cJSON_GetObjectItemCaseSensitive(obj, "missing")) {
        int64_t v = 0;
        const char *s = NULL;
        FUZZ_ASSERT(moe_json_int(path, obj, "missing", MOE_JSON_OPTIONAL, 42, 0, 1, &v) == MOE_OK && v == 42);
        FUZZ_ASSERT(moe_json_str(path, obj, "missing", MOE_JSON_REQUIRED, NULL, &s) == MOE_EINPUT && s == NULL);
        fuzz_check_message(path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root = NULL;
    if (moe_json_parse("fuzz.json", (const char *)data, size, &root) != MOE_OK) {
        FUZZ_ASSERT(root == NULL);
        fuzz_check_message("fuzz.json");
        return 0;
    }
    if (cJSON_IsObject(root)) {
        read_all("fuzz.json", root);
        for (const cJSON *e = root->child; e; e = e->next)
            if (cJSON_IsObject(e)) read_all("fuzz.json", e);
    }
    cJSON_Delete(root);
    return 0;
}
