/* weights.h - the tensors of a Hugging Face model folder: model.safetensors, or the shards named by
 * model.safetensors.index.json; or of one GGUF file. One name table over all files; data stays mmapped. The loader
 * records which tensors the architecture used, so that stray tensors can be reported. */
#ifndef MOE_IO_WEIGHTS_H
#define MOE_IO_WEIGHTS_H
#include "core/strmap.h"
#include "core/tensor.h"
#include "io/safetensors.h"

typedef struct moe_weights {
    char *dir;
    char *source;            /* model.safetensors or model.safetensors.index.json, for messages */
    int n_files;
    moe_st_file **files;
    int n;                   /* tensors over all files */
    moe_tensor **list;       /* [n] */
    int *file_of;            /* [n] index into files */
    unsigned char *used;     /* [n] */
    moe_strmap map;          /* name -> index */
    void **owned;            /* aligned copies of misaligned tensors */
    int n_owned, cap_owned;
    int in_memory;           /* files were read into memory rather than mapped */
    const char *format;      /* "safetensors" or "gguf" */
} moe_weights;

moe_status moe_weights_open(const char *dir, moe_weights **out);
/* in_memory: read the files into huge-page memory instead of mapping them (moe_st_open_ex). */
moe_status moe_weights_open_ex(const char *dir, int in_memory, moe_weights **out);
void moe_weights_close(moe_weights *w);
/* A table over one already parsed file (a GGUF file, io/gguf.h), which it takes over (closed with
 * the table, also on failure); path names the file in messages. */
moe_status moe_weights_from_file(const char *path, moe_st_file *f, const char *format, moe_weights **out);

int moe_weights_has(const moe_weights *w, const char *name);
/* Look up a float tensor (F32, BF16, F16) and check its shape; shape entries < 0 match any size.
 * Marks the tensor used. Errors name the shard file and the tensor. */
moe_status moe_weights_get(moe_weights *w, const char *name, int ndim, const int64_t *shape, moe_tensor *out);
/* Same, then convert to a newly allocated f32 array (caller frees with moe_free). */
moe_status moe_weights_get_f32(moe_weights *w, const char *name, int ndim, const int64_t *shape, float **out);
/* Number of tensors never fetched; *first gets one of their names. */
int moe_weights_unused(const moe_weights *w, const char **first);
/* Map every page of every file now (read-ahead plus one read per page), so that later compute does
 * not stop on page faults. Returns the bytes touched. */
size_t moe_weights_prefault(const moe_weights *w);
/* The bytes of a tensor the table holds in its own memory (joined block types, aligned copies), which
 * a loader may rewrite in place (reorder rows); NULL for bytes in a file's map or read-only memory. */
void *moe_weights_writable(const moe_weights *w, const moe_tensor *t);
/* Path of the file holding a tensor, for messages. */
const char *moe_weights_file_of(const moe_weights *w, const char *name);
#endif
