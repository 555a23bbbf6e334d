/* json.c - strict JSON parsing and typed field access (see json.h). */
#include "io/json.h"
#include "core/error.h"
#include "io/input_file.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t moe_utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
        else return i;
        if (i + len > n) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += len;
    }
    return n;
}

moe_status moe_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    int fd;
    struct stat st;
    MOE_TRY(moe_input_open(path, 0, &fd, &st));
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return moe_fail(MOE_EINPUT, "%s: file is %lld bytes, more than the %zu allowed", path, (long long)st.st_size, max_bytes);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) { close(fd); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { free(buf); close(fd); return moe_fail(MOE_EIO, "%s: read failed", path); }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = 0;
    *out = buf;
    if (len) *len = size;
    return MOE_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static moe_status check_dupes(const char *path, const cJSON *node, int depth) {
    if (depth > MOE_JSON_MAX_DEPTH) return moe_fail(MOE_EINPUT, "%s: JSON nested too deeply", path);
    if (cJSON_IsObject(node)) {
        int n = cJSON_GetArraySize(node);
        if (n <= 32) {
            for (const cJSON *a = node->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (strcmp(a->string, b->string) == 0)
                        return moe_fail(MOE_EINPUT, "%s: duplicate key \"%.80s\"", path, a->string);
        } else { /* large objects (vocabularies, tensor tables): sort the keys */
            const char **keys = malloc(sizeof(char *) * (size_t)n);
            if (!keys) return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
            int k = 0;
            for (const cJSON *a = node->child; a; a = a->next) keys[k++] = a->string;
            qsort(keys, (size_t)k, sizeof *keys, cmp_str_ptr);
            for (int i = 1; i < k; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) {
                    moe_status st = moe_fail(MOE_EINPUT, "%s: duplicate key \"%.80s\"", path, keys[i]);
                    free(keys);
                    return st;
                }
            free(keys);
        }
    }
    for (const cJSON *c = node->child; c; c = c->next) MOE_TRY(check_dupes(path, c, depth + 1));
    return MOE_OK;
}

static size_t line_of(const char *buf, size_t off) {
    size_t line = 1;
    for (size_t i = 0; i < off; i++) line += buf[i] == '\n';
    return line;
}

/* What cJSON lets through but JSON (and Python's json module) does not: nesting past max_depth
 * (cJSON allows 1000 levels and then says only "parse error") and raw control characters inside
 * strings. Returns the offset of the first offence, or len; *what names it. Brackets inside strings
 * do not count. Run before cJSON, which never sees such input. */
#define MOE_STR_(x) #x
#define MOE_STR(x) MOE_STR_(x)
static size_t scan_check(const char *buf, size_t len, const char **what) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (in_str) {
            if (ch < 0x20) { *what = "control character inside a string"; return i; }
            if (ch == '\\') i++;
            else if (ch == '"') in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > MOE_JSON_MAX_DEPTH) { *what = "JSON nested more than " MOE_STR(MOE_JSON_MAX_DEPTH) " levels deep"; return i; }
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return len;
}

moe_status moe_json_parse(const char *path, const char *buf, size_t len, cJSON **out) {
    *out = NULL;
    size_t bad = moe_utf8_check((const unsigned char *)buf, len);
    if (bad != len) return moe_fail(MOE_EINPUT, "%s: not valid UTF-8 at byte %zu", path, bad);
    if (memchr(buf, 0, len)) return moe_fail(MOE_EINPUT, "%s: NUL byte inside JSON", path);
    const char *what = NULL;
    size_t bad_at = scan_check(buf, len, &what);
    if (bad_at != len) return moe_fail(MOE_EINPUT, "%s: %s at byte %zu", path, what, bad_at);
    /* cJSON up to 1.7.17 reads one byte past the given length when an object ends in a comma
     * (CVE-2023-53154; distributions patch it, not all), and buf may end exactly where a mapped
     * file does: parse a NUL-terminated copy. The copy costs far less than the parse. */
    char *copy = malloc(len + 1);
    if (!copy) return moe_fail(MOE_ENOMEM, "%s: out of memory for %zu bytes of JSON", path, len);
    memcpy(copy, buf, len);
    copy[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    size_t off = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
    free(copy);
    if (!root)
        return moe_fail(MOE_EINPUT, "%s: malformed JSON near line %zu (byte %zu)", path, line_of(buf, off), off);
    for (const char *p = buf + off; p < buf + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return moe_fail(MOE_EINPUT, "%s: unexpected data after the JSON value at byte %zu", path, (size_t)(p - buf));
        }
    moe_status st = check_dupes(path, root, 0);
    if (st != MOE_OK) { cJSON_Delete(root); return st; }
    *out = root;
    return MOE_OK;
}

moe_status moe_json_parse_file(const char *path, size_t max_bytes, cJSON **out) {
    char *buf;
    size_t len;
    *out = NULL;
    MOE_TRY(moe_read_file(path, max_bytes, &buf, &len));
    moe_status st = moe_json_parse(path, buf, len, out);
    free(buf);
    return st;
}

int moe_json_has(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v);
}

static const char *type_name(const cJSON *v) {
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

static const cJSON *lookup(const char *path, const cJSON *obj, const char *key, int required, moe_status *st) {
    *st = MOE_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) *st = moe_fail(MOE_EINPUT, "%s: missing required field \"%s\"", path, key);
        return NULL;
    }
    return v;
}

moe_status moe_json_num(const char *path, const cJSON *obj, const char *key, int required, double def,
                        double min, double max, double *out) {
    moe_status st;
    const cJSON *v = lookup(path, obj, key, required, &st);
    *out = def;
    if (!v) return st;
    if (!cJSON_IsNumber(v))
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be a number, got %s", path, key, type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d < min || d > max)
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" = %g is outside [%g, %g]", path, key, d, min, max);
    *out = d;
    return MOE_OK;
}

moe_status moe_json_int(const char *path, const cJSON *obj, const char *key, int required, int64_t def,
                        int64_t min, int64_t max, int64_t *out) {
    moe_status st;
    const cJSON *v = lookup(path, obj, key, required, &st);
    *out = def;
    if (!v) return st;
    if (!cJSON_IsNumber(v))
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be an integer, got %s", path, key, type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be an integer, got %g", path, key, d);
    /* compare as integers: (double)INT64_MAX rounds up to 2^63, which does not fit an int64_t */
    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0 || (int64_t)d < min || (int64_t)d > max)
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" = %.0f is outside [%lld, %lld]", path, key, d, (long long)min,
                        (long long)max);
    *out = (int64_t)d;
    return MOE_OK;
}

moe_status moe_json_int32(const char *path, const cJSON *obj, const char *key, int required, int def, int min,
                          int max, int *out) {
    int64_t v;
    moe_status st = moe_json_int(path, obj, key, required, def, min, max, &v);
    *out = (int)v;
    return st;
}

moe_status moe_json_bool(const char *path, const cJSON *obj, const char *key, int required, int def, int *out) {
    moe_status st;
    const cJSON *v = lookup(path, obj, key, required, &st);
    *out = def;
    if (!v) return st;
    if (!cJSON_IsBool(v))
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be true or false, got %s", path, key, type_name(v));
    *out = cJSON_IsTrue(v);
    return MOE_OK;
}

moe_status moe_json_str(const char *path, const cJSON *obj, const char *key, int required, const char *def,
                        const char **out) {
    moe_status st;
    const cJSON *v = lookup(path, obj, key, required, &st);
    *out = def;
    if (!v) return st;
    if (!cJSON_IsString(v))
        return moe_fail(MOE_EINPUT, "%s: field \"%s\" must be a string, got %s", path, key, type_name(v));
    *out = v->valuestring;
    return MOE_OK;
}

void moe_json_put_str(FILE *f, const char *s) {
    fputc('"', f);
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); i++; continue; }
        if (c < 0x20 || c == 0x7f) { fprintf(f, "\\u%04x", c); i++; continue; }
        if (c < 0x80) { fputc(c, f); i++; continue; }
        size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;   /* one character, checked on its own */
        if (len > n - i || moe_utf8_check((const unsigned char *)s + i, len) != len) {
            fputs("\xef\xbf\xbd", f);   /* a bad byte: U+FFFD */
            i++;
            continue;
        }
        fwrite(s + i, 1, len, f);
        i += len;
    }
    fputc('"', f);
}

int moe_json_put_num(FILE *f, const char *fmt, double x) {
    if (!isfinite(x)) { fputs("null", f); return 1; }
    fprintf(f, fmt, x);
    return 0;
}
