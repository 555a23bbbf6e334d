/* json.h - strict JSON reading on top of cJSON: the bytes must be valid UTF-8 without NUL bytes or raw
 * control characters in strings, nesting is at most MOE_JSON_MAX_DEPTH, the document must be
 * complete with nothing after it, and no object may repeat a key (Python keeps the last duplicate,
 * cJSON the first; refusing both avoids silently reading a different value than transformers does).
 * Typed getters name the file and the field in every error. */
#ifndef MOE_IO_JSON_H
#define MOE_IO_JSON_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "moe.h"

/* Index of the first invalid UTF-8 byte, or n if all valid (overlongs, surrogates, > U+10FFFF rejected). */
size_t moe_utf8_check(const unsigned char *s, size_t n);

/* Read a whole file (at most max_bytes) into a NUL-terminated buffer. */
moe_status moe_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

/* Deeper nesting is refused before parsing (no file we read needs more than a handful of levels). */
#define MOE_JSON_MAX_DEPTH 200

/* buf need not be NUL-terminated; it is never read past len. */
moe_status moe_json_parse(const char *path, const char *buf, size_t len, cJSON **out);
moe_status moe_json_parse_file(const char *path, size_t max_bytes, cJSON **out);

enum { MOE_JSON_OPTIONAL = 0, MOE_JSON_REQUIRED = 1 };

/* Each getter: absent or null key -> *out = def (or error if required); wrong type or out of range -> error. */
moe_status moe_json_int(const char *path, const cJSON *obj, const char *key, int required, int64_t def,
                        int64_t min, int64_t max, int64_t *out);
moe_status moe_json_int32(const char *path, const cJSON *obj, const char *key, int required, int def, int min,
                          int max, int *out);
moe_status moe_json_num(const char *path, const cJSON *obj, const char *key, int required, double def,
                        double min, double max, double *out);
moe_status moe_json_bool(const char *path, const cJSON *obj, const char *key, int required, int def, int *out);
/* The string stays owned by the cJSON tree. */
moe_status moe_json_str(const char *path, const cJSON *obj, const char *key, int required, const char *def,
                        const char **out);
/* Present and not null? */
int moe_json_has(const cJSON *obj, const char *key);

/* ---- writing JSON by hand (the CLI's reports): what printf alone gets wrong ---- */

/* s as a JSON string literal: quotes, backslashes and control characters escaped. Text that is not
 * valid UTF-8 has each bad byte written as U+FFFD, so the output stays valid JSON. */
void moe_json_put_str(FILE *f, const char *s);
/* x with the printf format fmt (one double), or null when x is NaN or infinite, which JSON cannot
 * spell (printf would write "nan"). Returns 1 when it wrote null. */
int moe_json_put_num(FILE *f, const char *fmt, double x);
#endif
