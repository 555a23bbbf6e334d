/* fuzz_gguf.c - arbitrary bytes as a GGUF file image for moe_gguf_parse, then, when that succeeds,
 * the metadata through moe_gguf_model_config (architecture, keys, tensor renaming). On success every
 * tensor must lie inside the image with the size its type and shape give; every byte of every tensor
 * is read and converted to f32 (ASan checks the bounds, UBSan the arithmetic); every key is read
 * through the typed getters. Failures must leave one message naming the file. */
#include "fuzz_common.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "io/gguf.h"
#include "model/gguf_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_st_file f;
    moe_gguf_meta m;
    moe_status st = moe_gguf_parse("fuzz.gguf", data, size, &f, &m);
    if (st != MOE_OK) {
        FUZZ_ASSERT(st == MOE_EINPUT || st == MOE_ENOMEM);
        FUZZ_ASSERT(f.n == 0 && f.tensors == NULL && f.names == NULL && m.kv == NULL);
        fuzz_check_message("fuzz.gguf");
        return 0;
    }
    float sink = 0;
    for (int i = 0; i < f.n; i++) {
        const moe_tensor *t = &f.tensors[i];
        FUZZ_ASSERT(t->name && t->name[0] && t->ndim >= 1 && t->ndim <= 4);
        int64_t rows = 1;
        for (int d = 0; d + 1 < t->ndim; d++) rows *= t->shape[d];
        int64_t cols = t->shape[t->ndim - 1];
        FUZZ_ASSERT(cols % moe_dtype_block(t->dtype) == 0);
        FUZZ_ASSERT((uint64_t)rows * moe_dtype_row_bytes(t->dtype, cols) == t->nbytes);
        const uint8_t *p = t->data;
        FUZZ_ASSERT(p >= data && t->nbytes <= size && (size_t)(p - data) <= size - t->nbytes);
        if (rows * cols <= (1 << 16)) {
            float *buf = moe_alloc(sizeof(float) * (size_t)(rows * cols) + 4);
            if (buf && moe_rows_to_f32(t->dtype, p, rows, cols, buf) == 0)
                for (int64_t k = 0; k < rows * cols; k++) sink += buf[k];
            moe_free(buf);
        } else {
            for (size_t k = 0; k < t->nbytes; k++) sink += p[k];
        }
    }
    for (int i = 0; i < m.n; i++) { /* every getter on every key: right type or a clean error */
        moe_status e = MOE_OK;
        int64_t iv;
        double dv;
        int bv;
        const char *s;
        size_t sl;
        uint32_t et;
        uint64_t n;
        const uint8_t *arr;
        moe_gguf_get_i64(&m, m.kv[i].key, INT64_MIN, INT64_MAX, &iv, &e);
        moe_gguf_get_f64(&m, m.kv[i].key, &dv, &e);
        moe_gguf_get_bool(&m, m.kv[i].key, &bv, &e);
        if (moe_gguf_get_str(&m, m.kv[i].key, &s, &sl, &e) == 1) FUZZ_ASSERT(s >= (const char *)data && sl <= size);
        if (moe_gguf_get_arr(&m, m.kv[i].key, &et, &n, &arr, &e) == 1 && et != MOE_GGUF_STRING && n > 0) {
            sink += (float)moe_gguf_arr_i64(et, arr, n - 1);
            sink += (float)moe_gguf_arr_f64(et, arr, 0);
        }
    }
    moe_config cfg;
    memset(&cfg, 0, sizeof cfg);
    st = moe_gguf_model_config("fuzz.gguf", &f, &m, &cfg);
    if (st != MOE_OK) fuzz_check_message("fuzz.gguf");
    moe_st_clear(&f);
    moe_gguf_meta_free(&m);
    if (sink == 12345.678f) fprintf(stderr, "%g\n", sink);
    return 0;
}
