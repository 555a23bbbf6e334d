/* tensor.h - a view of a weight tensor: dtype, shape and a pointer that may point into an mmapped
 * file. Tensors never own their data; whoever maps or allocates it frees it. */
#ifndef MOE_CORE_TENSOR_H
#define MOE_CORE_TENSOR_H
#include <stddef.h>
#include <stdint.h>
#include "core/dtype.h"

#define MOE_MAX_DIMS 8

typedef struct moe_tensor {
    moe_dtype dtype;
    int ndim;
    int64_t shape[MOE_MAX_DIMS];
    const void *data;
    size_t nbytes;
    const char *name;   /* for error messages; points into the loader's name table */
} moe_tensor;

static inline int64_t moe_tensor_numel(const moe_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
/* Rows and columns of a 2-D weight [out, in]. */
static inline int64_t moe_tensor_rows(const moe_tensor *t) { return t->shape[0]; }
static inline int64_t moe_tensor_cols(const moe_tensor *t) { return t->ndim > 1 ? t->shape[1] : 1; }
#endif
