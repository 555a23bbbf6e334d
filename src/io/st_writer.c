/* st_writer.c - safetensors output (see st_writer.h). */
#include "io/st_writer.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static moe_status build_header(const moe_st_entry *e, int n, const char *const *mk, const char *const *mv, int nm,
                               char **out) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return moe_fail(MOE_ENOMEM, "out of memory");
    if (nm > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < nm; i++) cJSON_AddStringToObject(meta, mk[i], mv[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, e[i].name);
        if (!t) break;
        cJSON_AddStringToObject(t, "dtype", e[i].dtype);
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; sh && d < e[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e[i].shape[d]));
        cJSON *of = cJSON_AddArrayToObject(t, "data_offsets");
        if (of) {
            cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
            cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + e[i].nbytes)));
        }
        off += e[i].nbytes;
    }
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *out ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
}

moe_status moe_st_write(const char *path, const moe_st_entry *e, int n, const char *const *meta_keys,
                        const char *const *meta_vals, int n_meta, moe_st_data_fn data, void *user) {
    for (int i = 0; i < n; i++) {
        if (e[i].nbytes > (1ull << 53))
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" is too large for a safetensors offset", path, e[i].name);
        for (int j = 0; j < i; j++)
            if (!strcmp(e[i].name, e[j].name)) return moe_fail(MOE_EINTERNAL, "%s: tensor \"%s\" listed twice", path, e[i].name);
    }
    char *hdr;
    MOE_TRY(build_header(e, n, meta_keys, meta_vals, n_meta, &hdr));
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    moe_atomic_file af;
    moe_status st = moe_atomic_open(&af, path);
    if (st != MOE_OK) { free(hdr); return st; }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len8, 1, 8, af.f);
    fwrite(hdr, 1, hlen, af.f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', af.f);
    free(hdr);
    for (int i = 0; i < n && st == MOE_OK; i++) {
        if (!e[i].nbytes) continue;
        const void *p = NULL;
        if ((st = data(user, i, &p)) != MOE_OK) break;
        if (fwrite(p, 1, (size_t)e[i].nbytes, af.f) != e[i].nbytes) st = moe_fail(MOE_EIO, "%s: write failed", path);
    }
    if (st != MOE_OK) { moe_atomic_abort(&af); return st; }
    return moe_atomic_commit(&af);
}
