/* fuzz_safetensors.c - arbitrary bytes as a safetensors file image for moe_st_parse.
 * Two input forms, so the fuzzer need not keep the length prefix in step with the header it
 * mutates: input starting with '{' is a header up to its last '}' followed by the data, and the
 * harness prepends the length; any other input is the file image as is (which exercises the
 * length field itself). On success every tensor must lie inside the data buffer with the size its
 * shape and dtype give; every byte of every tensor is read so that ASan checks the bounds. */
#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *img = NULL;
    const uint8_t *buf = data;
    size_t n = size;
    if (size > 0 && data[0] == '{') {
        size_t hlen = size;
        while (hlen > 0 && data[hlen - 1] != '}') hlen--;
        img = malloc(size + 8);
        if (!img) return 0;
        for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        memcpy(img + 8, data, size);
        buf = img;
        n = size + 8;
    }
    moe_st_file f;
    moe_status st = moe_st_parse("fuzz.safetensors", buf, n, &f);
    if (st != MOE_OK) {
        FUZZ_ASSERT(st == MOE_EINPUT || st == MOE_ENOMEM);
        FUZZ_ASSERT(f.n == 0 && f.tensors == NULL && f.names == NULL && f.path == NULL);
        fuzz_check_message("fuzz.safetensors");
    } else {
        FUZZ_ASSERT(f.data >= buf + 8 && f.data + f.data_size == buf + n);
        size_t covered = 0;
        unsigned sum = 0;
        for (int i = 0; i < f.n; i++) {
            const moe_tensor *t = &f.tensors[i];
            const uint8_t *p = t->data;
            FUZZ_ASSERT(t->name && t->name[0]);
            FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= MOE_MAX_DIMS);
            uint64_t numel = 1;
            for (int d = 0; d < t->ndim; d++) {
                FUZZ_ASSERT(t->shape[d] >= 0);
                numel *= (uint64_t)t->shape[d];
            }
            FUZZ_ASSERT(numel * moe_dtype_size(t->dtype) == t->nbytes);
            FUZZ_ASSERT(p >= f.data && t->nbytes <= f.data_size && (size_t)(p - f.data) <= f.data_size - t->nbytes);
            for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
            covered += t->nbytes;
        }
        FUZZ_ASSERT(covered == f.data_size); /* no holes and no overlaps: the tensors tile the data */
        moe_st_clear(&f);
        if (sum == 0xdeadbeef) fprintf(stderr, "%u\n", sum); /* keep the reads */
    }
    free(img);
    return 0;
}
