/* safetensors.c - header validation and mmap (see safetensors.h for the rules enforced). */
#include "io/safetensors.h"
#include "core/error.h"
#include "io/input_file.h"
#include "core/alloc.h"
#include "io/json.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct { uint64_t begin, end; int idx; } span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

void moe_st_clear(moe_st_file *f) {
    if (f->names) for (int i = 0; i < f->n; i++) free(f->names[i]);
    free(f->names);
    free(f->tensors);
    free(f->path);
    f->names = NULL; f->tensors = NULL; f->path = NULL; f->n = 0;
}

static int read_u64_json(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    /* doubles are exact up to 2^53; larger offsets cannot be represented faithfully */
    if (!isfinite(d) || d < 0 || d != floor(d) || d > 9007199254740992.0) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Members of the header's top-level object (tensors and __metadata__), counted on the raw bytes:
 * commas at depth 1 outside strings. Malformed JSON may miscount; the parser refuses it anyway. */
static uint64_t count_members(const uint8_t *s, size_t n) {
    uint64_t commas = 0;
    int depth = 0, in_str = 0, any = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') { in_str = 1; any |= depth == 1; }
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') depth--;
        else if (c == ',' && depth == 1) commas++;
    }
    return any ? commas + 1 : 0;
}

static moe_status parse_entry(const char *path, const cJSON *e, size_t data_size, moe_tensor *t, uint64_t *b,
                              uint64_t *en) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\" is not an object", path, name);
    for (const cJSON *k = e->child; k; k = k->next)
        if (strcmp(k->string, "dtype") && strcmp(k->string, "shape") && strcmp(k->string, "data_offsets"))
            return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\" has unknown field \"%.40s\"", path, name, k->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": dtype missing or not a string", path, name);
    int d = moe_dtype_from_safetensors(dt->valuestring);
    if (d < 0) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": unknown dtype \"%.20s\"", path, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": shape missing or not an array", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > MOE_MAX_DIMS) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": %d dimensions (at most %d)", path, name, nd, MOE_MAX_DIMS);
    t->dtype = (moe_dtype)d;
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *s = sh->child; s; s = s->next, i++) {
        uint64_t v;
        if (read_u64_json(s, &v))
            return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)v;
        if (v && numel > UINT64_MAX / v) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": shape overflows", path, name);
        numel *= v;
    }
    uint64_t esz = moe_dtype_size(t->dtype);
    if (numel > UINT64_MAX / esz) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": shape overflows", path, name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || read_u64_json(off->child, b) ||
        read_u64_json(off->child->next, en))
        return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": data_offsets must be two non-negative integers", path, name);
    if (*b > *en) return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": data_offsets [%llu, %llu] are reversed", path, name,
                                  (unsigned long long)*b, (unsigned long long)*en);
    if (*en > data_size)
        return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": data_offsets end %llu is past the data (%zu bytes); file truncated?",
                        path, name, (unsigned long long)*en, data_size);
    if (*en - *b != numel * esz)
        return moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\": %llu bytes for shape and dtype %s need %llu", path, name,
                        (unsigned long long)(*en - *b), dt->valuestring, (unsigned long long)(numel * esz));
    t->nbytes = (size_t)(numel * esz);
    return MOE_OK;
}

moe_status moe_st_parse(const char *path, const uint8_t *buf, size_t size, moe_st_file *f) {
    memset(f, 0, sizeof *f);
    cJSON *root = NULL;
    moe_status st = MOE_OK;
    span *spans = NULL;
    uint64_t hlen = 0;
    if (!(f->path = moe_strdup(path))) { st = moe_fail(MOE_ENOMEM, "%s: out of memory", path); goto done; }
    if (size < 8) { st = moe_fail(MOE_EINPUT, "%s: %zu bytes is too short for a safetensors file", path, size); goto done; }
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8) {
        st = moe_fail(MOE_EINPUT, "%s: header length %llu is past the end of the file (%zu bytes); file truncated?", path,
                      (unsigned long long)hlen, size);
        goto done;
    }
    if (hlen > MOE_ST_MAX_HEADER) {
        st = moe_fail(MOE_EINPUT, "%s: header length %llu exceeds the %u-byte limit", path, (unsigned long long)hlen,
                      MOE_ST_MAX_HEADER);
        goto done;
    }
    if (hlen < 2) {
        st = moe_fail(MOE_EINPUT, "%s: header of %llu bytes cannot hold a JSON object", path, (unsigned long long)hlen);
        goto done;
    }
    uint64_t members = count_members(buf + 8, (size_t)hlen), data_bytes = size - 8 - hlen;
    if (members > MOE_ST_FREE_TENSORS + 1 + data_bytes) {   /* + 1: __metadata__ */
        st = moe_fail(MOE_EINPUT, "%s: the header lists %llu tensors for %llu bytes of data (beyond %d, each tensor must "
                      "hold data)", path, (unsigned long long)members, (unsigned long long)data_bytes, MOE_ST_FREE_TENSORS);
        goto done;
    }
    if ((st = moe_json_parse(path, (const char *)buf + 8, (size_t)hlen, &root)) != MOE_OK) goto done;
    if (!cJSON_IsObject(root)) { st = moe_fail(MOE_EINPUT, "%s: header is not a JSON object", path); goto done; }
    f->data = buf + 8 + hlen;
    f->data_size = size - 8 - (size_t)hlen;
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    f->names = calloc((size_t)n + 1, sizeof *f->names);
    spans = calloc((size_t)n + 1, sizeof *spans);
    if (!f->tensors || !f->names || !spans) { st = moe_fail(MOE_ENOMEM, "%s: out of memory", path); goto done; }
    int i = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) { st = moe_fail(MOE_EINPUT, "%s: __metadata__ is not an object", path); goto done; }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    st = moe_fail(MOE_EINPUT, "%s: __metadata__ value \"%.60s\" is not a string", path, m->string);
                    goto done;
                }
            continue;
        }
        if (!e->string[0]) { st = moe_fail(MOE_EINPUT, "%s: empty tensor name", path); goto done; }
        moe_tensor *t = &f->tensors[i];
        if ((st = parse_entry(path, e, f->data_size, t, &spans[i].begin, &spans[i].end)) != MOE_OK) goto done;
        f->names[i] = moe_strdup(e->string);
        if (!f->names[i]) { st = moe_fail(MOE_ENOMEM, "%s: out of memory", path); goto done; }
        t->name = f->names[i];
        t->data = f->data + spans[i].begin;
        spans[i].idx = i;
        f->n = ++i;
    }
    /* Names are unique (moe_json_parse refuses duplicate keys). Now overlaps and holes. */
    qsort(spans, (size_t)n, sizeof *spans, cmp_span);
    uint64_t pos = 0;
    for (int k = 0; k < n; k++) {
        if (spans[k].begin < pos) {
            st = moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\" overlaps another tensor's bytes", path,
                          f->names[spans[k].idx]);
            goto done;
        }
        if (spans[k].begin > pos) {
            st = moe_fail(MOE_EINPUT, "%s: bytes %llu..%llu of the data belong to no tensor", path,
                          (unsigned long long)pos, (unsigned long long)spans[k].begin);
            goto done;
        }
        pos = spans[k].end;
    }
    if (pos != f->data_size)
        st = moe_fail(MOE_EINPUT, "%s: %llu trailing bytes after the last tensor", path,
                      (unsigned long long)(f->data_size - pos));
done:
    free(spans);
    cJSON_Delete(root);
    if (st != MOE_OK) moe_st_clear(f);
    return st;
}

/* The whole file in anonymous memory with huge pages; NULL (and errno) on failure. */
static void *read_into_memory(int fd, size_t size) {
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    madvise(map, size, MADV_HUGEPAGE);
    for (size_t got = 0; got < size;) {
        size_t want = size - got > ((size_t)1 << 26) ? (size_t)1 << 26 : size - got;
        ssize_t r = pread(fd, (char *)map + got, want, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            munmap(map, size);
            errno = r == 0 ? EIO : errno; /* the file shrank under us */
            return NULL;
        }
        got += (size_t)r;
    }
    mprotect(map, size, PROT_READ);
    return map;
}

moe_status moe_file_map(const char *path, int in_memory, void **out, size_t *size_out) {
    *out = NULL;
    *size_out = 0;
    int fd;
    struct stat sb;
    MOE_TRY(moe_input_open(path, 0, &fd, &sb));
    size_t size = (size_t)sb.st_size;
    if (size < 8) { close(fd); return moe_fail(MOE_EINPUT, "%s: %zu bytes is too short for a weights file", path, size); }
    void *map = in_memory ? read_into_memory(fd, size) : mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (!map || map == MAP_FAILED)
        return moe_fail(MOE_EIO, "%s: %s failed: %s", path, in_memory ? "reading into memory" : "mmap", strerror(errno));
    *out = map;
    *size_out = size;
    return MOE_OK;
}

void moe_file_unmap(void *map, size_t size) {
    if (map) munmap(map, size);
}

moe_status moe_st_open_ex(const char *path, int in_memory, moe_st_file **out) {
    *out = NULL;
    void *map;
    size_t size;
    MOE_TRY(moe_file_map(path, in_memory, &map, &size));
    moe_st_file *f = malloc(sizeof *f);
    if (!f) { munmap(map, size); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
    moe_status st = moe_st_parse(path, map, size, f);
    if (st != MOE_OK) { munmap(map, size); free(f); return st; }
    f->map = map;
    f->size = size;
    *out = f;
    return MOE_OK;
}

moe_status moe_st_open(const char *path, moe_st_file **out) { return moe_st_open_ex(path, 0, out); }

void moe_st_close(moe_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    moe_st_clear(f);
    free(f);
}
