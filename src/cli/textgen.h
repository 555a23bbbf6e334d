/* textgen.h - the parts of text generation that `moe run` and `moe serve` share: the set of tokens that
 * end a generation, a model folder's chat format (docs/CHAT.md), and the stop-string filter, which
 * holds back text that may turn out to be the start of a stop string and cuts the output where one
 * appears. */
#ifndef MOE_CLI_TEXTGEN_H
#define MOE_CLI_TEXTGEN_H
#include "model/chat.h"
#include "moe.h"
#include <stddef.h>
#include <stdint.h>

#define MOE_MAX_EOS 16

typedef struct moe_eos_set {
    int32_t id[MOE_MAX_EOS];
    int n;
} moe_eos_set;

void moe_eos_add(moe_eos_set *s, int32_t id);   /* ignores -1, duplicates and overflow */
int moe_eos_has(const moe_eos_set *s, int32_t id);
/* config.json's eos_token_id list and the tokenizer's EOS. */
void moe_eos_add_model(moe_eos_set *s, const moe_model_info *m, const moe_tokenizer *t);
/* The end-of-turn tokens of every chat format the tokenizer knows (<|im_end|>, </s>, <|eot_id|>, ...). */
void moe_eos_add_chat_ends(moe_eos_set *s, const moe_tokenizer *t);

/* chat_template from tokenizer_config.json or chat_template.jinja in dir: *out is malloc'ed, or NULL
 * when neither file has one. A file that is there but cannot be read or parsed is an error. */
moe_status moe_chat_template_read(const char *dir, char **out);
/* The format of a template, or without one the family's, guessed from its special tokens. */
moe_chat_format moe_chat_format_for(const char *chat_template, const moe_tokenizer *t, const char *model_type);

typedef struct moe_stop_filter {
    const char *const *stops;   /* non-empty strings, owned by the caller */
    int n_stops;
    int hit;                    /* a stop string appeared: the output ended before it */
    char *pending;              /* candidates not yet given out */
    size_t n, cap;
    char *out;                  /* what the last push gave out */
    size_t out_cap;
} moe_stop_filter;

/* Add generated text; *out, *out_len get the text that can be shown now (valid until the next call).
 * After a hit, nothing more comes out. */
moe_status moe_stop_push(moe_stop_filter *f, const char *text, size_t len, const char **out, size_t *out_len);
/* At the end of a generation without a hit: the text still held back. */
void moe_stop_flush(moe_stop_filter *f, const char **out, size_t *out_len);
void moe_stop_free(moe_stop_filter *f);
#endif
