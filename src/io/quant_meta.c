/* quant_meta.c - the "moe_quant" metadata of quantized safetensors files (see quant_meta.h).
 * The header was already validated by moe_st_parse; it is parsed again here only when it mentions the
 * key (a substring test), so ordinary checkpoints pay nothing. */
#include "io/quant_meta.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/strmap.h"
#include "io/json.h"
#include <math.h>
#include <string.h>

static int int_in(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) return 0;
    *out = (int64_t)d;
    return 1;
}

static moe_status apply_table(moe_st_file *f, const char *path, const cJSON *root) {
    if (!cJSON_IsObject(root)) return moe_fail(MOE_EINPUT, "%s: __metadata__ %s is not a JSON object", path, MOE_QUANT_META_KEY);
    for (const cJSON *k = root->child; k; k = k->next)
        if (strcmp(k->string, "version") && strcmp(k->string, "tensors"))
            return moe_fail(MOE_EINPUT, "%s: %s has unknown field \"%.40s\"", path, MOE_QUANT_META_KEY, k->string);
    int64_t version;
    if (!int_in(cJSON_GetObjectItemCaseSensitive(root, "version"), 1, 1, &version))
        return moe_fail(MOE_EINPUT, "%s: %s: \"version\" must be 1", path, MOE_QUANT_META_KEY);
    const cJSON *tab = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    if (!cJSON_IsObject(tab)) return moe_fail(MOE_EINPUT, "%s: %s: \"tensors\" must be an object", path, MOE_QUANT_META_KEY);
    moe_strmap names;
    if (moe_strmap_init(&names, (size_t)f->n)) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_status st = MOE_OK;
    for (int i = 0; i < f->n && st == MOE_OK; i++)
        if (moe_strmap_put(&names, f->names[i], strlen(f->names[i]), i) < 0) st = moe_fail(MOE_ENOMEM, "out of memory");
    for (const cJSON *e = tab->child; e && st == MOE_OK; e = e->next) {
        const char *name = e->string;
        int64_t rows, cols;
        const cJSON *ty = cJSON_IsArray(e) && cJSON_GetArraySize(e) == 3 ? e->child : NULL;
        int qt = ty && cJSON_IsString(ty) ? moe_quant_type_from_name(ty->valuestring) : -1;
        if (!ty || !int_in(ty->next, 1, 2147483647.0, &rows) || !int_in(ty->next->next, 1, 2147483647.0, &cols)) {
            st = moe_fail(MOE_EINPUT, "%s: %s entry \"%.100s\" must be [type, rows, cols] with positive sizes", path,
                          MOE_QUANT_META_KEY, name);
            break;
        }
        if (qt < 0) {
            st = moe_fail(MOE_EINPUT, "%s: %s entry \"%.100s\": unknown type \"%.20s\" (q8_0 or q4)", path,
                          MOE_QUANT_META_KEY, name, cJSON_IsString(ty) ? ty->valuestring : "?");
            break;
        }
        int k = moe_strmap_gets(&names, name);
        if (k < 0) {
            st = moe_fail(MOE_EINPUT, "%s: %s lists \"%.100s\", which is not in the file", path, MOE_QUANT_META_KEY, name);
            break;
        }
        moe_tensor *t = &f->tensors[k];
        size_t rb = moe_quant_row_bytes((moe_dtype)qt, cols);
        if (t->dtype != MOE_U8 || t->ndim != 2 || t->shape[0] != rows || (uint64_t)t->shape[1] != (uint64_t)rb) {
            st = moe_fail(MOE_EINPUT, "%s: tensor \"%.100s\" should be U8 [%lld, %zu] to hold %s [%lld, %lld]", path,
                          name, (long long)rows, rb, ty->valuestring, (long long)rows, (long long)cols);
            break;
        }
        t->dtype = (moe_dtype)qt;
        t->shape[1] = cols;
    }
    moe_strmap_free(&names);
    return st;
}

moe_status moe_quant_meta_apply(moe_st_file *f, const uint8_t *buf, size_t size) {
    const char *path = f->path ? f->path : "(buffer)";
    if (size < 8) return MOE_OK;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8) return MOE_OK; /* moe_st_parse would have refused it */
    const char *hdr = (const char *)buf + 8;
    if (!memmem(hdr, (size_t)hlen, "\"" MOE_QUANT_META_KEY "\"", strlen(MOE_QUANT_META_KEY) + 2)) return MOE_OK;
    cJSON *root = NULL, *tab = NULL;
    MOE_TRY(moe_json_parse(path, hdr, (size_t)hlen, &root));
    moe_status st = MOE_OK;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *q = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, MOE_QUANT_META_KEY) : NULL;
    if (q) {
        if (!cJSON_IsString(q)) st = moe_fail(MOE_EINPUT, "%s: __metadata__ %s is not a string", path, MOE_QUANT_META_KEY);
        else if ((st = moe_json_parse(path, q->valuestring, strlen(q->valuestring), &tab)) == MOE_OK)
            st = apply_table(f, path, tab);
    }
    cJSON_Delete(tab);
    cJSON_Delete(root);
    return st;
}
