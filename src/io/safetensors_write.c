/* safetensors_write.c - see safetensors_write.h. The header is built with cJSON (names and metadata
 * are escaped properly); the data is streamed tensor by tensor, never copied whole. */
#include "io/safetensors_write.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *st_dtype(moe_dtype t) {
    switch (t) {
    case MOE_F32: return "F32";
    case MOE_BF16: return "BF16";
    case MOE_F16: return "F16";
    default: return NULL;
    }
}

moe_status moe_st_write(const char *path, const moe_st_out *t, int n, const char *const (*meta)[2], int n_meta) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_status st = MOE_OK;
    uint64_t off = 0;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; m && i < n_meta; i++)
            if (!cJSON_AddStringToObject(m, meta[i][0], meta[i][1])) m = NULL;
        if (!m) { st = moe_fail(MOE_ENOMEM, "out of memory"); goto done; }
    }
    for (int i = 0; i < n; i++) {
        const char *dt = st_dtype(t[i].dtype);
        if (!dt) { st = moe_fail(MOE_EINTERNAL, "%s: tensor %s has an unsupported dtype", path, t[i].name); goto done; }
        uint64_t numel = 1;
        for (int j = 0; j < t[i].ndim; j++) numel *= (uint64_t)t[i].shape[j];
        uint64_t bytes = numel * moe_dtype_size(t[i].dtype);
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!offs || !cJSON_AddStringToObject(e, "dtype", dt)) { st = moe_fail(MOE_ENOMEM, "out of memory"); goto done; }
        for (int j = 0; j < t[i].ndim; j++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[j]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    char *hdr = cJSON_PrintUnformatted(root);
    if (!hdr) { st = moe_fail(MOE_ENOMEM, "out of memory"); goto done; }
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    moe_atomic_file af;
    if ((st = moe_atomic_open(&af, path)) != MOE_OK) { free(hdr); goto done; }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len8, 1, 8, af.f);
    fwrite(hdr, 1, hlen, af.f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', af.f);
    free(hdr);
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int j = 0; j < t[i].ndim; j++) numel *= (uint64_t)t[i].shape[j];
        size_t bytes = (size_t)(numel * moe_dtype_size(t[i].dtype));
        if (bytes && fwrite(t[i].data, 1, bytes, af.f) != bytes) break;
    }
    st = moe_atomic_commit(&af);   /* reports a failed write (ferror) as well */
done:
    cJSON_Delete(root);
    return st;
}
