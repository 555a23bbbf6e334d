/* st_writer.h - writing a .safetensors file, atomically, tensor by tensor.
 * The caller lists the tensors (name, dtype string, shape, byte size) in the order their bytes should
 * lie in the file, and supplies each tensor's bytes through a callback when it is written: a whole
 * model never needs to be in memory at once, and the order is the caller's (moe quantize puts each
 * expert's gate, up and down back to back so that the expert store reads an expert in one go).
 * The header is padded with spaces to a multiple of 8 bytes, as the reference implementation does, so
 * that the data of f32/f64 tensors stays aligned in an mmap. */
#ifndef MOE_IO_ST_WRITER_H
#define MOE_IO_ST_WRITER_H
#include <stdint.h>
#include "core/tensor.h"
#include "moe.h"

typedef struct moe_st_entry {
    const char *name;
    const char *dtype;        /* safetensors dtype string: "F32", "BF16", "U8", ... */
    int ndim;
    int64_t shape[MOE_MAX_DIMS];
    uint64_t nbytes;          /* must equal the product of shape and the dtype size */
} moe_st_entry;

/* Sets *out to entry i's nbytes bytes (valid until the next call) or fails with moe_fail. */
typedef moe_status (*moe_st_data_fn)(void *user, int i, const void **out);

/* meta: n_meta key/value string pairs for __metadata__ (may be 0). */
moe_status moe_st_write(const char *path, const moe_st_entry *e, int n, const char *const *meta_keys,
                        const char *const *meta_vals, int n_meta, moe_st_data_fn data, void *user);
#endif
