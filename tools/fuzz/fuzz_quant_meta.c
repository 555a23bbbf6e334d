/* fuzz_quant_meta.c - safetensors images with "moe_quant" metadata: parse, validate, retype, then read
 * every retyped tensor's bytes and check the sizes the loader relies on. Must never crash or hang. */
#include "core/quant.h"
#include "io/quant_meta.h"
#include "io/safetensors.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_st_file f;
    /* moe_st_clear is safe after a failed parse (it finds nothing left to free) */
    if (moe_st_parse("fuzz.safetensors", data, size, &f) != MOE_OK) { moe_st_clear(&f); return 0; }
    if (moe_quant_meta_apply(&f, data, size) == MOE_OK) {
        unsigned sum = 0;
        for (int i = 0; i < f.n; i++) {
            const moe_tensor *t = &f.tensors[i];
            if (!moe_dtype_is_quant(t->dtype)) continue;
            if ((uint64_t)t->shape[0] * moe_quant_row_bytes(t->dtype, t->shape[1]) != t->nbytes) abort();
            const unsigned char *p = t->data;
            for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
            /* dequantize the first row: reads exactly one row of bytes */
            if (t->shape[1] <= 4096) {
                float *row = malloc(sizeof(float) * (size_t)t->shape[1]);
                if (row) moe_dequantize_row(t->dtype, t->data, t->shape[1], row);
                free(row);
            }
        }
        if (sum == 0xFFFFFFFFu) abort(); /* keep the reads */
    }
    moe_st_clear(&f);
    return 0;
}
