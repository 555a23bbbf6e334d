/* textgen.c - see textgen.h. */
#include "cli/textgen.h"
#include "core/error.h"
#include "io/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void moe_eos_add(moe_eos_set *s, int32_t id) {
    if (id < 0 || moe_eos_has(s, id) || s->n == MOE_MAX_EOS) return;
    s->id[s->n++] = id;
}

int moe_eos_has(const moe_eos_set *s, int32_t id) {
    for (int i = 0; i < s->n; i++)
        if (s->id[i] == id) return 1;
    return 0;
}

void moe_eos_add_model(moe_eos_set *s, const moe_model_info *m, const moe_tokenizer *t) {
    for (int i = 0; i < m->n_eos; i++) moe_eos_add(s, m->eos_token_id[i]);
    moe_eos_add(s, moe_tokenizer_get_info(t)->eos_id);
}

#define FWBAR "\xef\xbd\x9c"  /* U+FF5C, DeepSeek's special-token bar */
#define LOWBAR "\xe2\x96\x81" /* U+2581 */

void moe_eos_add_chat_ends(moe_eos_set *s, const moe_tokenizer *t) {
    static const char deepseek_eos[] = "<" FWBAR "end" LOWBAR "of" LOWBAR "sentence" FWBAR ">";
    static const char *const ends[] = {"<|im_end|>", "<|end|>", "<|return|>", "<|endoftext|>", "</s>", deepseek_eos,
                                       "<|eot_id|>"};
    for (size_t i = 0; i < sizeof ends / sizeof *ends; i++) moe_eos_add(s, moe_tokenizer_token_id(t, ends[i], strlen(ends[i])));
}

moe_status moe_chat_template_read(const char *dir, char **out) {
    char path[4096];
    struct stat sb;
    *out = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (stat(path, &sb) == 0) {
        cJSON *root;
        MOE_TRY(moe_json_parse_file(path, 64u << 20, &root));
        /* a list of named templates (older files) is not read: fall back to the other file */
        const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
        moe_status st = MOE_OK;
        if (cJSON_IsString(t) && !(*out = strdup(t->valuestring))) st = moe_fail(MOE_ENOMEM, "out of memory");
        cJSON_Delete(root);
        if (st || *out) return st;
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    size_t len;
    if (stat(path, &sb) == 0) MOE_TRY(moe_read_file(path, 16u << 20, out, &len));
    return MOE_OK;
}

moe_chat_format moe_chat_format_for(const char *chat_template, const moe_tokenizer *t, const char *model_type) {
    if (chat_template) return moe_chat_detect(chat_template);
    if (moe_tokenizer_token_id(t, "<|im_start|>", 12) >= 0) return MOE_CHAT_CHATML;
    if (moe_tokenizer_token_id(t, "<|start|>", 9) >= 0 && moe_tokenizer_token_id(t, "<|message|>", 11) >= 0)
        return MOE_CHAT_HARMONY;
    static const char user[] = "<" FWBAR "User" FWBAR ">";
    if (moe_tokenizer_token_id(t, user, sizeof user - 1) >= 0) return MOE_CHAT_DEEPSEEK;
    if (!strcmp(model_type, "llama")) return MOE_CHAT_LLAMA2;
    if (!strcmp(model_type, "mistral") || !strcmp(model_type, "mixtral")) return MOE_CHAT_MISTRAL;
    return MOE_CHAT_PLAIN;
}

/* Length of the longest suffix of buf[0..n) that is a proper prefix of a stop string: those bytes
 * are held back until we know whether a stop string is being produced. */
static size_t held_back(const moe_stop_filter *f, const char *buf, size_t n) {
    size_t best = 0;
    for (int i = 0; i < f->n_stops; i++) {
        size_t sl = strlen(f->stops[i]);
        for (size_t k = sl - 1; k > best; k--)
            if (k <= n && memcmp(buf + n - k, f->stops[i], k) == 0) { best = k; break; }
    }
    return best;
}

static moe_status grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return MOE_OK;
    size_t c = need * 2;
    char *p = realloc(*buf, c);
    if (!p) return moe_fail(MOE_ENOMEM, "out of memory");
    *buf = p;
    *cap = c;
    return MOE_OK;
}

moe_status moe_stop_push(moe_stop_filter *f, const char *text, size_t len, const char **out, size_t *out_len) {
    *out = "";
    *out_len = 0;
    if (f->hit) return MOE_OK;
    MOE_TRY(grow(&f->pending, &f->cap, f->n + len + 1));
    if (len) memcpy(f->pending + f->n, text, len);
    f->n += len;
    size_t show = f->n;
    for (int i = 0; i < f->n_stops; i++) {   /* the earliest stop string wins */
        const char *hit = memmem(f->pending, f->n, f->stops[i], strlen(f->stops[i]));
        if (hit && (size_t)(hit - f->pending) < show) { show = (size_t)(hit - f->pending); f->hit = 1; }
    }
    size_t keep = f->hit ? 0 : held_back(f, f->pending, f->n);
    if (!f->hit) show = f->n - keep;
    MOE_TRY(grow(&f->out, &f->out_cap, show + 1));
    memcpy(f->out, f->pending, show);
    f->out[show] = 0;
    memmove(f->pending, f->pending + f->n - keep, keep);
    f->n = keep;
    *out = f->out;
    *out_len = show;
    return MOE_OK;
}

void moe_stop_flush(moe_stop_filter *f, const char **out, size_t *out_len) {
    *out = f->hit || !f->pending ? "" : f->pending;
    *out_len = f->hit ? 0 : f->n;
    f->n = 0;
}

void moe_stop_free(moe_stop_filter *f) {
    free(f->pending);
    free(f->out);
    f->pending = f->out = NULL;
    f->n = f->cap = f->out_cap = 0;
}
