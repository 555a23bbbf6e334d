/* gguf_dump.c - test helper: parse a GGUF file with moe's reader and write one tensor, converted to
 * f32 by moe's converter for its type, as raw little-endian floats; or list the tensors.
 *   gguf_dump FILE              name, moe dtype and shape of every tensor, one per line
 *   gguf_dump FILE NAME OUT     the tensor NAME (as named in the file) to OUT
 * tests/hf/test_gguf.py compares the output with the gguf package's numpy dequantizer bit for bit. */
#include "core/alloc.h"
#include "core/dtype.h"
#include "io/gguf.h"
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) { fprintf(stderr, "usage: gguf_dump FILE [NAME OUT]\n"); return 1; }
    moe_st_file *f;
    moe_gguf_meta meta;
    if (moe_gguf_open(argv[1], 0, &f, &meta) != MOE_OK) { fprintf(stderr, "gguf_dump: %s\n", moe_last_error()); return 2; }
    int rc = argc == 2 ? 0 : 3;
    for (int i = 0; i < f->n; i++) {
        const moe_tensor *t = &f->tensors[i];
        if (argc == 2) {
            printf("%s %s", t->name, moe_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++) printf(" %lld", (long long)t->shape[d]);
            printf("\n");
            continue;
        }
        if (strcmp(t->name, argv[2])) continue;
        int64_t cols = t->shape[t->ndim - 1], numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        float *buf = moe_alloc(sizeof(float) * (size_t)numel);
        FILE *o = fopen(argv[3], "wb");
        if (buf && o && moe_rows_to_f32(t->dtype, t->data, numel / cols, cols, buf) == 0 &&
            fwrite(buf, sizeof(float), (size_t)numel, o) == (size_t)numel)
            rc = 0;
        if (o) fclose(o);
        moe_free(buf);
    }
    moe_st_close(f);
    moe_gguf_meta_free(&meta);
    if (rc == 3) fprintf(stderr, "gguf_dump: no tensor \"%s\" or cannot convert it\n", argv[2]);
    return rc;
}
