/* gguf.c - GGUF parsing and validation (see gguf.h for the rules enforced). A cursor walks the file
 * image; every read checks the bytes that remain first, so a truncated or hostile file ends in an
 * error naming the file and what was being read, never a read past the image. */
#include "io/gguf.h"
#include "core/alloc.h"
#include "core/dtype_traits.h"
#include "core/error.h"
#include "io/input_file.h"
#include "io/json.h"
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64          /* GGML_MAX_NAME: names are shorter */
#define GGUF_MAX_KEY (1u << 16)

/* ggml's types: name, elements per block, bytes per block (ggml.c's type traits) */
static const struct { uint32_t id; const char *name; uint32_t block, bytes; } k_ggml[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},     {9, "Q8_1", 32, 40},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},  {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},  {20, "IQ4_NL", 32, 18},  {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},  {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},        {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},        {28, "F64", 1, 8},       {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},      {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},  {39, "MXFP4", 32, 17},
};

static int ggml_index(uint32_t id) {
    for (size_t i = 0; i < sizeof k_ggml / sizeof *k_ggml; i++)
        if (k_ggml[i].id == id) return (int)i;
    return -1;
}
const char *moe_gguf_type_name(uint32_t id) { int i = ggml_index(id); return i >= 0 ? k_ggml[i].name : NULL; }
int moe_gguf_type_id(const char *name) {
    for (size_t i = 0; name && i < sizeof k_ggml / sizeof *k_ggml; i++)
        if (!strcmp(k_ggml[i].name, name)) return (int)k_ggml[i].id;
    return -1;
}

static const char *const k_vtype[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
static const uint8_t k_vsize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct cur { const char *path; const uint8_t *p; size_t left; size_t size; } cur;

static size_t pos_of(const cur *c) { return c->size - c->left; }

static moe_status need(cur *c, uint64_t n, const char *what) {
    if (n > c->left)
        return moe_fail(MOE_EINPUT, "%s: %s at byte %zu needs %llu bytes, only %zu remain; file truncated?", c->path, what,
                        pos_of(c), (unsigned long long)n, c->left);
    return MOE_OK;
}
static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static moe_status rd(cur *c, int n, uint64_t *v, const char *what) {
    MOE_TRY(need(c, (uint64_t)n, what));
    *v = le(c->p, n);
    c->p += n;
    c->left -= (size_t)n;
    return MOE_OK;
}
/* a u64-length string: *s points into the image */
static moe_status rd_str(cur *c, const uint8_t **s, uint64_t *len, uint64_t max, const char *what) {
    MOE_TRY(rd(c, 8, len, what));
    if (*len > max) return moe_fail(MOE_EINPUT, "%s: %s at byte %zu is %llu bytes long (at most %llu)", c->path, what,
                                    pos_of(c) - 8, (unsigned long long)*len, (unsigned long long)max);
    MOE_TRY(need(c, *len, what));
    *s = c->p;
    c->p += *len;
    c->left -= (size_t)*len;
    return MOE_OK;
}

/* Keys and tensor names appear in messages: valid UTF-8 without control characters keeps every
 * message one printable line. */
static int clean_text(const uint8_t *s, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f) return 0;
    return moe_utf8_check(s, (size_t)n) == (size_t)n;
}

int moe_gguf_sniff(const uint8_t *buf, size_t size) { return size >= 4 && !memcmp(buf, "GGUF", 4); }

int moe_gguf_is_file(const char *path) {
    int fd;   /* a FIFO or device is not a GGUF file: never wait on one */
    if (moe_input_open(path, 0, &fd, NULL) != MOE_OK) { moe_clear_error(); return 0; }
    uint8_t b[4];
    ssize_t r = read(fd, b, 4);
    close(fd);
    return r == 4 && moe_gguf_sniff(b, 4);
}

void moe_gguf_meta_free(moe_gguf_meta *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->kv[i].key);
    free(m->kv);
    free(m->ggml_type);
    free(m->path);
    moe_strmap_free(&m->map);
    memset(m, 0, sizeof *m);
}

static moe_status parse_value(cur *c, moe_gguf_kv *kv) {
    char what[96];
    snprintf(what, sizeof what, "value of \"%.40s\"", kv->key);
    if (kv->type >= MOE_GGUF_NTYPES) return moe_fail(MOE_EINPUT, "%s: key \"%.60s\" has unknown value type %u", c->path, kv->key, kv->type);
    kv->n = 1;
    if (kv->type == MOE_GGUF_STRING) {
        MOE_TRY(rd_str(c, &kv->val, &kv->len, c->size, what));
        return MOE_OK;
    }
    if (kv->type != MOE_GGUF_ARRAY) {
        MOE_TRY(need(c, k_vsize[kv->type], what));
        kv->val = c->p;
        c->p += k_vsize[kv->type];
        c->left -= k_vsize[kv->type];
        return MOE_OK;
    }
    uint64_t et, n;
    MOE_TRY(rd(c, 4, &et, what));
    MOE_TRY(rd(c, 8, &n, what));
    if (et >= MOE_GGUF_NTYPES || et == MOE_GGUF_ARRAY)
        return moe_fail(MOE_EINPUT, "%s: key \"%.60s\" is an array of %s%llu, which GGUF readers do not accept", c->path, kv->key,
                        et == MOE_GGUF_ARRAY ? "arrays (type " : "unknown type ", (unsigned long long)et);
    kv->elem_type = (uint32_t)et;
    kv->n = n;
    kv->val = c->p;
    if (et == MOE_GGUF_STRING) {
        if (n > c->left / 8) return moe_fail(MOE_EINPUT, "%s: key \"%.60s\": %llu strings cannot fit in the %zu bytes that remain", c->path,
                                             kv->key, (unsigned long long)n, c->left);
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *s;
            uint64_t len;
            MOE_TRY(rd_str(c, &s, &len, c->size, what));
        }
        return MOE_OK;
    }
    uint64_t es = k_vsize[et];
    if (n > c->left / es)
        return moe_fail(MOE_EINPUT, "%s: key \"%.60s\": %llu elements of %s cannot fit in the %zu bytes that remain; file truncated?",
                        c->path, kv->key, (unsigned long long)n, k_vtype[et], c->left);
    c->p += n * es;
    c->left -= (size_t)(n * es);
    return MOE_OK;
}

static moe_status parse_kvs(cur *c, uint64_t n_kv, moe_gguf_meta *m) {
    if (n_kv > c->left / 13)   /* a key/value takes at least 8 + 1 + 4 bytes... (and a value byte) */
        return moe_fail(MOE_EINPUT, "%s: %llu key/value pairs cannot fit in a %zu-byte file", c->path, (unsigned long long)n_kv, c->size);
    m->kv = calloc((size_t)n_kv + 1, sizeof *m->kv);
    if (!m->kv || moe_strmap_init(&m->map, (size_t)n_kv)) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        moe_gguf_kv *kv = &m->kv[i];
        const uint8_t *k;
        uint64_t klen, t;
        MOE_TRY(rd_str(c, &k, &klen, GGUF_MAX_KEY, "key"));
        if (klen == 0 || !clean_text(k, klen))
            return moe_fail(MOE_EINPUT, "%s: key %llu is empty, or not UTF-8 text without control characters", c->path,
                            (unsigned long long)i);
        if (!(kv->key = malloc((size_t)klen + 1))) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
        memcpy(kv->key, k, (size_t)klen);
        kv->key[klen] = 0;
        m->n = (int)i + 1;
        int r = moe_strmap_put(&m->map, kv->key, (size_t)klen, (int)i);
        if (r < 0) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
        if (r > 0) return moe_fail(MOE_EINPUT, "%s: key \"%.60s\" appears twice", c->path, kv->key);
        MOE_TRY(rd(c, 4, &t, "value type"));
        kv->type = (uint32_t)t;
        MOE_TRY(parse_value(c, kv));
    }
    int a = moe_strmap_gets(&m->map, "general.alignment");
    m->alignment = 32;
    if (a >= 0) {
        const moe_gguf_kv *kv = &m->kv[a];
        uint64_t v = kv->type == MOE_GGUF_U32 ? le(kv->val, 4) : 0;
        if (kv->type != MOE_GGUF_U32 || v == 0 || (v & (v - 1)))
            return moe_fail(MOE_EINPUT, "%s: general.alignment must be a power of two held in a u32", c->path);
        m->alignment = v;
    }
    return MOE_OK;
}

static moe_status parse_tensor(cur *c, int i, moe_st_file *f, moe_gguf_meta *m, uint64_t *off, uint64_t *bytes) {
    const uint8_t *nm;
    uint64_t nlen, nd, ty;
    MOE_TRY(rd_str(c, &nm, &nlen, c->size, "tensor name"));
    if (nlen == 0 || nlen >= GGUF_MAX_NAME || !clean_text(nm, nlen))
        return moe_fail(MOE_EINPUT, "%s: tensor %d has a name of %llu bytes (1 to %d bytes of UTF-8 text without control "
                        "characters)", c->path, i, (unsigned long long)nlen, GGUF_MAX_NAME - 1);
    if (!(f->names[i] = malloc((size_t)nlen + 1))) return moe_fail(MOE_ENOMEM, "%s: out of memory", c->path);
    memcpy(f->names[i], nm, (size_t)nlen);
    f->names[i][nlen] = 0;
    f->n = i + 1;
    const char *name = f->names[i];
    moe_tensor *t = &f->tensors[i];
    t->name = name;
    MOE_TRY(rd(c, 4, &nd, "dimension count"));
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has %llu dimensions (1 to %d)", c->path, name, (unsigned long long)nd, GGUF_MAX_DIMS);
    uint64_t ne[GGUF_MAX_DIMS], numel = 1;
    for (uint64_t d = 0; d < nd; d++) {
        MOE_TRY(rd(c, 8, &ne[d], "dimension"));
        if (ne[d] < 1 || ne[d] > (uint64_t)INT64_MAX / numel)
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\": dimension %llu is %llu (at least 1, product below 2^63)", c->path, name,
                            (unsigned long long)d, (unsigned long long)ne[d]);
        numel *= ne[d];
    }
    MOE_TRY(rd(c, 4, &ty, "tensor type"));
    MOE_TRY(rd(c, 8, off, "tensor offset"));
    int gi = ggml_index((uint32_t)ty);
    if (ty > UINT32_MAX || gi < 0) return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has unknown ggml type %llu", c->path, name, (unsigned long long)ty);
    m->ggml_type[i] = (int)ty;
    if (ne[0] % k_ggml[gi].block)
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\": %llu columns are not whole %s blocks of %u", c->path, name,
                        (unsigned long long)ne[0], k_ggml[gi].name, k_ggml[gi].block);
    uint64_t rb = ne[0] / k_ggml[gi].block * k_ggml[gi].bytes;
    if (numel / ne[0] > UINT64_MAX / 2 / rb) return moe_fail(MOE_EINPUT, "%s: tensor \"%s\": size overflows", c->path, name);
    *bytes = rb * (numel / ne[0]);
    if (*off % m->alignment)
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\": offset %llu is not a multiple of the alignment %llu", c->path, name,
                        (unsigned long long)*off, (unsigned long long)m->alignment);
    int dt = moe_dtype_from_ggml_name(k_ggml[gi].name);
    if (dt < 0) {
        char names[256];
        moe_dtype_ggml_names(names, sizeof names);
        return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has type %s, which moe does not read (it reads %s)", c->path, name,
                        k_ggml[gi].name, names);
    }
    t->dtype = (moe_dtype)dt;
    t->ndim = (int)nd;
    for (uint64_t d = 0; d < nd; d++) t->shape[d] = (int64_t)ne[nd - 1 - d];
    t->nbytes = (size_t)*bytes;
    return MOE_OK;
}

moe_status moe_gguf_parse(const char *path, const uint8_t *buf, size_t size, moe_st_file *f, moe_gguf_meta *m) {
    memset(f, 0, sizeof *f);
    memset(m, 0, sizeof *m);
    cur c = {path, buf, size, size};
    moe_status st = MOE_OK;
    uint64_t ver, n_t, n_kv, *offs = NULL, *bytes = NULL;
    if (!(f->path = moe_strdup(path)) || !(m->path = moe_strdup(path))) { st = moe_fail(MOE_ENOMEM, "%s: out of memory", path); goto done; }
    if (size < 24 || !moe_gguf_sniff(buf, size)) { st = moe_fail(MOE_EINPUT, "%s: not a GGUF file (no \"GGUF\" magic)", path); goto done; }
    c.p += 4;
    c.left -= 4;
    rd(&c, 4, &ver, "version");
    if (ver == 1) { st = moe_fail(MOE_EINPUT, "%s: GGUF version 1 is not supported (convert the file again)", path); goto done; }
    if (ver > 0xffff) { st = moe_fail(MOE_EINPUT, "%s: a big-endian GGUF file is not supported", path); goto done; }
    if (ver != 2 && ver != 3) { st = moe_fail(MOE_EINPUT, "%s: GGUF version %llu is not supported (2 or 3)", path, (unsigned long long)ver); goto done; }
    m->version = (uint32_t)ver;
    rd(&c, 8, &n_t, "tensor count");
    rd(&c, 8, &n_kv, "key/value count");
    if ((st = parse_kvs(&c, n_kv, m)) != MOE_OK) goto done;
    if (n_t > c.left / 32 || n_t > (1u << 24)) {   /* a tensor info takes at least 8 + 1 + 4 + 8 + 4 + 8 bytes */
        st = moe_fail(MOE_EINPUT, "%s: %llu tensors cannot fit in the %zu bytes that remain", path, (unsigned long long)n_t, c.left);
        goto done;
    }
    int n = (int)n_t;
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    f->names = calloc((size_t)n + 1, sizeof *f->names);
    m->ggml_type = calloc((size_t)n + 1, sizeof *m->ggml_type);
    offs = calloc((size_t)n + 1, sizeof *offs);
    bytes = calloc((size_t)n + 1, sizeof *bytes);
    moe_strmap names;
    int names_ok = moe_strmap_init(&names, (size_t)n) == 0;
    if (!f->tensors || !f->names || !m->ggml_type || !offs || !bytes || !names_ok) {
        if (names_ok) moe_strmap_free(&names);
        st = moe_fail(MOE_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n && st == MOE_OK; i++) {
        st = parse_tensor(&c, i, f, m, &offs[i], &bytes[i]);
        if (st == MOE_OK) {
            int r = moe_strmap_put(&names, f->names[i], strlen(f->names[i]), i);
            if (r < 0) st = moe_fail(MOE_ENOMEM, "%s: out of memory", path);
            else if (r > 0) st = moe_fail(MOE_EINPUT, "%s: tensor \"%s\" appears twice", path, f->names[i]);
        }
    }
    moe_strmap_free(&names);
    if (st != MOE_OK) goto done;
    /* the data section starts at the next multiple of the alignment; tensors follow one another */
    uint64_t at = pos_of(&c), a = m->alignment;
    uint64_t data = at % a ? at + (a - at % a) : at;
    uint64_t expect = 0;
    for (int i = 0; i < n; i++) {
        if (offs[i] != expect) {
            st = moe_fail(MOE_EINPUT, "%s: tensor \"%s\" has offset %llu, expected %llu (tensors follow one another, padded to %llu)",
                          path, f->names[i], (unsigned long long)offs[i], (unsigned long long)expect, (unsigned long long)a);
            goto done;
        }
        if (data > size || offs[i] > size - data || bytes[i] > size - data - offs[i]) {
            st = moe_fail(MOE_EINPUT, "%s: tensor \"%s\" (bytes %llu..%llu of the data) ends past the end of the file; file truncated?",
                          path, f->names[i], (unsigned long long)offs[i], (unsigned long long)(offs[i] + bytes[i]));
            goto done;
        }
        f->tensors[i].data = buf + data + offs[i];
        uint64_t pad = bytes[i] % a ? a - bytes[i] % a : 0;
        expect = offs[i] + bytes[i] + pad;
    }
    f->data = buf + (data < size ? data : size);
    f->data_size = data < size ? size - data : 0;
done:
    free(offs);
    free(bytes);
    if (st != MOE_OK) {
        moe_st_clear(f);
        moe_gguf_meta_free(m);
    }
    return st;
}

moe_status moe_gguf_open(const char *path, int in_memory, moe_st_file **out, moe_gguf_meta *meta) {
    *out = NULL;
    memset(meta, 0, sizeof *meta);
    void *map;
    size_t size;
    MOE_TRY(moe_file_map(path, in_memory, &map, &size));
    moe_st_file *f = malloc(sizeof *f);
    if (!f) { moe_file_unmap(map, size); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
    moe_status st = moe_gguf_parse(path, map, size, f, meta);
    if (st != MOE_OK) { moe_file_unmap(map, size); free(f); return st; }
    f->map = map;
    f->size = size;
    *out = f;
    return MOE_OK;
}

/* ---- metadata lookups ----------------------------------------------------------------------- */

static const moe_gguf_kv *find(const moe_gguf_meta *m, const char *key) {
    int i = m->n ? moe_strmap_gets(&m->map, key) : -1;
    return i >= 0 ? &m->kv[i] : NULL;
}

static int is_int(uint32_t t) { return t <= MOE_GGUF_I32 || t == MOE_GGUF_U64 || t == MOE_GGUF_I64; }

/* value of an integer element; *neg set for a negative signed value */
static int64_t int_at(uint32_t t, const uint8_t *p, int *overflow) {
    *overflow = 0;
    switch (t) {
    case MOE_GGUF_U8: return p[0];
    case MOE_GGUF_I8: return (int8_t)p[0];
    case MOE_GGUF_U16: return (int64_t)le(p, 2);
    case MOE_GGUF_I16: return (int16_t)le(p, 2);
    case MOE_GGUF_U32: return (int64_t)le(p, 4);
    case MOE_GGUF_I32: return (int32_t)le(p, 4);
    case MOE_GGUF_U64: { uint64_t v = le(p, 8); *overflow = v > (uint64_t)INT64_MAX; return (int64_t)(v & (uint64_t)INT64_MAX); }
    case MOE_GGUF_I64: return (int64_t)le(p, 8);
    default: return 0;
    }
}

static double f64_at(uint32_t t, const uint8_t *p) {
    if (t == MOE_GGUF_F32) { uint32_t u = (uint32_t)le(p, 4); float f; memcpy(&f, &u, 4); return f; }
    if (t == MOE_GGUF_F64) { uint64_t u = le(p, 8); double d; memcpy(&d, &u, 8); return d; }
    int o;
    return (double)int_at(t, p, &o);
}

int64_t moe_gguf_arr_i64(uint32_t t, const uint8_t *data, uint64_t i) {
    int o;
    return int_at(t, data + i * k_vsize[t], &o);
}
double moe_gguf_arr_f64(uint32_t t, const uint8_t *data, uint64_t i) { return f64_at(t, data + i * k_vsize[t]); }

static int wrong(const moe_gguf_meta *m, const moe_gguf_kv *kv, const char *want, moe_status *st) {
    *st = moe_fail(MOE_EINPUT, "%s: key \"%.60s\" holds a %s, expected %s", m->path, kv->key,
                   kv->type < MOE_GGUF_NTYPES ? k_vtype[kv->type] : "?", want);
    return -1;
}

int moe_gguf_get_i64(const moe_gguf_meta *m, const char *key, int64_t lo, int64_t hi, int64_t *out, moe_status *st) {
    const moe_gguf_kv *kv = find(m, key);
    if (!kv) return 0;
    if (!is_int(kv->type)) return wrong(m, kv, "an integer", st);
    int o;
    int64_t v = int_at(kv->type, kv->val, &o);
    if (o || v < lo || v > hi) {
        *st = moe_fail(MOE_EINPUT, "%s: key \"%.60s\" is %s%lld, outside %lld..%lld", m->path, key, o ? "above " : "", (long long)v,
                       (long long)lo, (long long)hi);
        return -1;
    }
    *out = v;
    return 1;
}

int moe_gguf_get_f64(const moe_gguf_meta *m, const char *key, double *out, moe_status *st) {
    const moe_gguf_kv *kv = find(m, key);
    if (!kv) return 0;
    if (kv->type != MOE_GGUF_F32 && kv->type != MOE_GGUF_F64 && !is_int(kv->type)) return wrong(m, kv, "a number", st);
    *out = f64_at(kv->type, kv->val);
    return 1;
}

int moe_gguf_get_bool(const moe_gguf_meta *m, const char *key, int *out, moe_status *st) {
    const moe_gguf_kv *kv = find(m, key);
    if (!kv) return 0;
    if (kv->type != MOE_GGUF_BOOL) return wrong(m, kv, "a bool", st);
    *out = kv->val[0] != 0;
    return 1;
}

int moe_gguf_get_str(const moe_gguf_meta *m, const char *key, const char **s, size_t *len, moe_status *st) {
    const moe_gguf_kv *kv = find(m, key);
    if (!kv) return 0;
    if (kv->type != MOE_GGUF_STRING) return wrong(m, kv, "a string", st);
    *s = (const char *)kv->val;
    *len = (size_t)kv->len;
    return 1;
}

int moe_gguf_get_arr(const moe_gguf_meta *m, const char *key, uint32_t *et, uint64_t *n, const uint8_t **data, moe_status *st) {
    const moe_gguf_kv *kv = find(m, key);
    if (!kv) return 0;
    if (kv->type != MOE_GGUF_ARRAY) return wrong(m, kv, "an array", st);
    *et = kv->elem_type;
    *n = kv->n;
    *data = kv->val;
    return 1;
}
