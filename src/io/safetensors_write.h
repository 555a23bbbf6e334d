/* safetensors_write.h - write a .safetensors file atomically (temporary file, fsync, rename, see
 * atomic_file.h). Layout: u64 little-endian header length, the JSON header padded with spaces to a
 * multiple of 8 bytes (so every tensor starts 8-byte aligned), then the tensors back to back in the
 * order given. Metadata is an optional list of string pairs, written as "__metadata__". */
#ifndef MOE_IO_SAFETENSORS_WRITE_H
#define MOE_IO_SAFETENSORS_WRITE_H
#include "core/dtype.h"
#include "moe.h"
#include <stdint.h>

typedef struct moe_st_out {
    const char *name;
    moe_dtype dtype;          /* MOE_F32, MOE_BF16 or MOE_F16 */
    int ndim;
    int64_t shape[4];
    const void *data;         /* numel * dtype size bytes */
} moe_st_out;

/* meta: n_meta pairs {key, value}; may be NULL. */
moe_status moe_st_write(const char *path, const moe_st_out *t, int n, const char *const (*meta)[2], int n_meta);
#endif
