/* gguf.h - reading llama.cpp GGUF files (versions 2 and 3, little-endian) by mmap.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 key/value count; the key/value pairs (u64-length
 * strings, a u32 value type, the value; arrays carry an element type and a u64 count); the tensor
 * infos (name, u32 dimension count, u64 dimensions innermost first, u32 ggml type, u64 offset); then,
 * at the next multiple of general.alignment (default 32), the tensor data.
 *
 * Everything is validated before any tensor is used, with the rules llama.cpp's loader applies and
 * an error naming the file, the field and the value: the magic and version; every length, count and
 * string against the bytes that remain; value types and array element types (arrays of arrays are
 * refused, as ggml does); unique keys without NUL bytes; general.alignment a power of two held in a
 * u32; tensor names unique, non-empty and shorter than 64 bytes; 1 to 4 dimensions, each at least 1,
 * their product without overflow; a known ggml type whose block divides the innermost dimension;
 * every offset a multiple of the alignment and exactly where the previous tensor's padded data ends
 * (ggml's rule); every tensor's bytes inside the file.
 *
 * The tensors come out as a moe_st_file (the same container as a safetensors file, so the weights
 * table handles both), shapes outermost first like PyTorch's: ggml's ne = [cols, rows, experts]
 * becomes shape [experts, rows, cols]. A tensor of a ggml type moe cannot read is an error here. The
 * metadata stays in a moe_gguf_meta whose values point into the file image. */
#ifndef MOE_IO_GGUF_H
#define MOE_IO_GGUF_H
#include <stddef.h>
#include <stdint.h>
#include "core/strmap.h"
#include "io/safetensors.h"

enum {
    MOE_GGUF_U8 = 0, MOE_GGUF_I8, MOE_GGUF_U16, MOE_GGUF_I16, MOE_GGUF_U32, MOE_GGUF_I32, MOE_GGUF_F32,
    MOE_GGUF_BOOL, MOE_GGUF_STRING, MOE_GGUF_ARRAY, MOE_GGUF_U64, MOE_GGUF_I64, MOE_GGUF_F64, MOE_GGUF_NTYPES
};

typedef struct moe_gguf_kv {
    char *key;
    uint32_t type;            /* MOE_GGUF_*; for arrays, elem_type is the elements' type */
    uint32_t elem_type;
    uint64_t n;               /* elements of an array; 1 otherwise */
    const uint8_t *val;       /* the value's bytes (a string's bytes after its length; an array's first element) */
    uint64_t len;             /* bytes of a string value */
} moe_gguf_kv;

typedef struct moe_gguf_meta {
    char *path;
    uint32_t version;
    uint64_t alignment;
    int n;
    moe_gguf_kv *kv;
    moe_strmap map;
    int *ggml_type;           /* [tensors] each tensor's ggml type id, in file order */
} moe_gguf_meta;

/* Does the file image start like a GGUF file? */
int moe_gguf_sniff(const uint8_t *buf, size_t size);
/* Does the file at path start with the GGUF magic? (0 if it cannot be read) */
int moe_gguf_is_file(const char *path);

/* Parse and validate buf[0..size). f gets the tensors (data pointers into buf, no map), meta the
 * metadata (pointing into buf). */
moe_status moe_gguf_parse(const char *path, const uint8_t *buf, size_t size, moe_st_file *f, moe_gguf_meta *meta);
/* Map (or, in_memory, read into huge-page memory: moe_st_open_ex) and parse a file. *f owns the map. */
moe_status moe_gguf_open(const char *path, int in_memory, moe_st_file **f, moe_gguf_meta *meta);
void moe_gguf_meta_free(moe_gguf_meta *meta);

/* The name of a ggml type id ("Q4_K"), or NULL if unknown. */
const char *moe_gguf_type_name(uint32_t ggml_type);
/* The id of a ggml type name, or -1 (for writers: bench/make_bench_model.c). */
int moe_gguf_type_id(const char *name);

/* Metadata lookups. Each returns 1 if the key holds a value of a fitting type (and sets *out), 0 if
 * the key is absent, and fails (MOE_EINPUT, naming the file and key) through *st if it holds
 * something else; st is left alone otherwise. Integers of any width fit if the value is in range. */
int moe_gguf_get_i64(const moe_gguf_meta *m, const char *key, int64_t lo, int64_t hi, int64_t *out, moe_status *st);
int moe_gguf_get_f64(const moe_gguf_meta *m, const char *key, double *out, moe_status *st);
int moe_gguf_get_bool(const moe_gguf_meta *m, const char *key, int *out, moe_status *st);
/* A string value: *s points into the file image (not NUL-terminated), *len its length. */
int moe_gguf_get_str(const moe_gguf_meta *m, const char *key, const char **s, size_t *len, moe_status *st);
/* An array: its element type and count, and the first element's bytes. */
int moe_gguf_get_arr(const moe_gguf_meta *m, const char *key, uint32_t *elem_type, uint64_t *n, const uint8_t **data,
                     moe_status *st);
/* Element i of a numeric array as i64 / f64 (the array is known to be valid). */
int64_t moe_gguf_arr_i64(uint32_t elem_type, const uint8_t *data, uint64_t i);
double moe_gguf_arr_f64(uint32_t elem_type, const uint8_t *data, uint64_t i);
#endif
