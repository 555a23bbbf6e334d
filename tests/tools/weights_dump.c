/* weights_dump.c - test helper: open a GGUF file (moe's GGUF reader) or a model folder (moe's
 * safetensors weights table, with FP8 and MXFP4 pairs already joined) and write one tensor,
 * converted to f32 by moe's converter for its type, as raw little-endian floats; or list them.
 *   weights_dump PATH              name, moe dtype and shape of every tensor, one per line
 *   weights_dump PATH NAME OUT     the tensor NAME (as named in the file) to OUT
 * tests/hf/test_gguf.py and test_fp8_mxfp4.py compare the output with numpy / torch bit for bit. */
#include "core/alloc.h"
#include "core/dtype.h"
#include "io/gguf.h"
#include "io/weights.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int dump(const moe_tensor *t, const char *out) {
    int64_t cols = t->shape[t->ndim - 1], numel = moe_tensor_numel(t);
    float *buf = moe_alloc(sizeof(float) * (size_t)numel + 4);
    FILE *o = fopen(out, "wb");
    int ok = buf && o && cols > 0 && moe_rows_to_f32(t->dtype, t->data, numel / cols, cols, buf) == 0 &&
             fwrite(buf, sizeof(float), (size_t)numel, o) == (size_t)numel;
    if (o) fclose(o);
    moe_free(buf);
    return ok ? 0 : 3;
}

static int visit(moe_tensor *const *list, int n, int argc, char **argv) {
    int rc = argc == 2 ? 0 : 3;
    for (int i = 0; i < n; i++) {
        const moe_tensor *t = list[i];
        if (argc == 2) {
            printf("%s %s", t->name, moe_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++) printf(" %lld", (long long)t->shape[d]);
            printf("\n");
        } else if (!strcmp(t->name, argv[2])) {
            rc = dump(t, argv[3]);
        }
    }
    if (rc == 3) fprintf(stderr, "weights_dump: no tensor \"%s\" or cannot convert it\n", argv[2]);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) { fprintf(stderr, "usage: weights_dump PATH [NAME OUT]\n"); return 1; }
    struct stat sb;
    if (stat(argv[1], &sb) == 0 && S_ISDIR(sb.st_mode)) {
        moe_weights *w;
        if (moe_weights_open(argv[1], &w) != MOE_OK) { fprintf(stderr, "weights_dump: %s\n", moe_last_error()); return 2; }
        int rc = visit(w->list, w->n, argc, argv);
        moe_weights_close(w);
        return rc;
    }
    moe_st_file *f;
    moe_gguf_meta meta;
    if (moe_gguf_open(argv[1], 0, &f, &meta) != MOE_OK) { fprintf(stderr, "weights_dump: %s\n", moe_last_error()); return 2; }
    moe_tensor **list = malloc(sizeof *list * ((size_t)f->n + 1));
    for (int i = 0; list && i < f->n; i++) list[i] = &f->tensors[i];
    int rc = list ? visit(list, f->n, argc, argv) : 3;
    free(list);
    moe_st_close(f);
    moe_gguf_meta_free(&meta);
    return rc;
}
