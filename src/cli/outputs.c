/* outputs.c - output paths must not replace what the command reads (see outputs.h). */
#include "cli/outputs.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SHARDS 4096

typedef struct input_set {
    char (*path)[1024];
    dev_t *dev;
    ino_t *ino;
    int n, cap;
} input_set;

static void add(input_set *s, const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || s->n == s->cap) return;
    snprintf(s->path[s->n], sizeof s->path[s->n], "%s", path);
    s->dev[s->n] = sb.st_dev;
    s->ino[s->n] = sb.st_ino;
    s->n++;
}

/* A model folder's own files: what the loader, the tokenizer and moe run read. */
static void add_model(input_set *s, const char *dir) {
    static const char *const names[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                        "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                                        "generation_config.json", "special_tokens_map.json"};
    char p[1024];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        add(s, p);
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    cJSON *root;
    struct stat sb;
    if (stat(p, &sb) != 0 || moe_json_parse_file(p, 256u << 20, &root) != MOE_OK) { moe_clear_error(); return; }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    for (const cJSON *e = cJSON_IsObject(map) ? map->child : NULL; e; e = e->next)
        if (cJSON_IsString(e) && !strchr(e->valuestring, '/')) {
            snprintf(p, sizeof p, "%s/%s", dir, e->valuestring);
            add(s, p);
        }
    cJSON_Delete(root);
}

static moe_status make_set(input_set *s, const char *model_dir, const char *const *inputs, int n_inputs) {
    memset(s, 0, sizeof *s);
    s->cap = MAX_SHARDS + 16 + n_inputs;
    s->path = malloc(sizeof *s->path * (size_t)s->cap);
    s->dev = malloc(sizeof *s->dev * (size_t)s->cap);
    s->ino = malloc(sizeof *s->ino * (size_t)s->cap);
    if (!s->path || !s->dev || !s->ino) return moe_fail(MOE_ENOMEM, "out of memory");
    if (model_dir) add_model(s, model_dir);
    for (int i = 0; i < n_inputs; i++) add(s, inputs[i]);
    return MOE_OK;
}

static void free_set(input_set *s) { free(s->path); free(s->dev); free(s->ino); }

/* MOE_EUSAGE if out (following links) is one of the set. */
static moe_status not_an_input(const char *flag, const char *out, const input_set *s) {
    struct stat sb;
    if (stat(out, &sb) != 0) return MOE_OK;   /* absent: it cannot be an input */
    for (int i = 0; i < s->n; i++)
        if (s->dev[i] == sb.st_dev && s->ino[i] == sb.st_ino)
            return strcmp(out, s->path[i])
                       ? moe_fail(MOE_EUSAGE, "%s %s is %s, which this command reads; refusing to overwrite it", flag, out,
                                  s->path[i])
                       : moe_fail(MOE_EUSAGE, "%s %s is a file this command reads; refusing to overwrite it", flag, out);
    return MOE_OK;
}

moe_status moe_cli_check_output(const char *flag, const char *path, const char *model_dir, const char *const *inputs,
                                int n_inputs) {
    MOE_TRY(moe_atomic_check(path));
    input_set s;
    moe_status st = make_set(&s, model_dir, inputs, n_inputs);
    if (!st) st = not_an_input(flag, path, &s);
    free_set(&s);
    return st;
}

moe_status moe_cli_check_output_dir(const char *flag, const char *dir, const char *model_dir, const char *const *inputs,
                                    int n_inputs, const char *const *names, int n_names) {
    MOE_TRY(moe_atomic_check_dir(dir));
    struct stat a, b;
    if (model_dir && stat(dir, &a) == 0 && stat(model_dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return moe_fail(MOE_EUSAGE, "%s %s is the model folder %s; the output folder must differ from the model folder",
                        flag, dir, model_dir);
    input_set s;
    moe_status st = make_set(&s, model_dir, inputs, n_inputs);
    char p[1024];
    for (int i = 0; !st && i < n_names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        struct stat sb;
        if (lstat(p, &sb) == 0) st = moe_atomic_check(p);   /* a FIFO or device named like an output */
        if (!st) st = not_an_input(flag, p, &s);
    }
    free_set(&s);
    return st;
}
