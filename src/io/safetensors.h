/* safetensors.h - reading .safetensors files by mmap.
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * then the data buffer. Validation (all before any tensor is used): the header fits in the file and
 * is strict JSON; every dtype is known; shape entries are non-negative integers; offsets lie inside
 * the data buffer; shape x dtype size equals the byte length; names are unique; tensors do not
 * overlap and, as the format requires, cover the data buffer without holes. Memory follows what
 * the file holds: beyond MOE_ST_FREE_TENSORS, every tensor must own at least one byte of data, so
 * a header of millions of zero-size tensors is refused (counted before the JSON tree is built). */
#ifndef MOE_IO_SAFETENSORS_H
#define MOE_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "core/tensor.h"
#include "moe.h"

#define MOE_ST_MAX_HEADER (100u << 20)
#define MOE_ST_FREE_TENSORS 4096

typedef struct moe_st_file {
    char *path;
    void *map;          /* whole file, read-only; NULL for in-memory parses */
    size_t size;
    const uint8_t *data; /* start of the data buffer */
    size_t data_size;
    int n;               /* tensors */
    moe_tensor *tensors; /* data pointers into the map; names owned by this struct */
    char **names;
} moe_st_file;

/* Parse and validate the file image buf[0..size). Tensor data pointers point into buf. */
moe_status moe_st_parse(const char *path, const uint8_t *buf, size_t size, moe_st_file *out);
/* mmap and parse a file. */
moe_status moe_st_open(const char *path, moe_st_file **out);
/* in_memory != 0: read the file into anonymous memory backed by transparent huge pages instead of
 * mapping the page cache. Decode streams every weight once per token, and 2 MiB pages keep the
 * hardware prefetchers running across page boundaries with few TLB misses (measurably faster);
 * the price is a copy at load time and memory that the page cache cannot share. */
moe_status moe_st_open_ex(const char *path, int in_memory, moe_st_file **out);
void moe_st_close(moe_st_file *f);
/* Map a whole weights file read-only (in_memory: read it into huge-page memory instead, as above);
 * the caller parses it and unmaps it with moe_file_unmap (moe_st_close does for a moe_st_file). */
moe_status moe_file_map(const char *path, int in_memory, void **map, size_t *size);
void moe_file_unmap(void *map, size_t size);
/* Release what moe_st_parse allocated (not the buffer). */
void moe_st_clear(moe_st_file *f);
#endif
