/* chat.h - turning conversation turns into prompt text, per model family.
 * We recognise the family from the chat_template string in tokenizer_config.json (the markers each
 * family's template contains) instead of running Jinja: the templates that ship with the models we
 * load reduce to a handful of fixed formats, and a fixed format is easy to test and to document
 * (docs/CHAT.md). Special-token strings in the text are matched by the tokenizer. */
#ifndef MOE_MODEL_CHAT_H
#define MOE_MODEL_CHAT_H

typedef enum moe_chat_format {
    MOE_CHAT_PLAIN = 0,   /* no template: "User: ...\nAssistant:" */
    MOE_CHAT_CHATML,      /* Qwen: <|im_start|>role\n...<|im_end|>\n */
    MOE_CHAT_LLAMA2,      /* [INST] <<SYS>> ... <</SYS>> ... [/INST] */
    MOE_CHAT_MISTRAL,     /* [INST] ... [/INST] */
    MOE_CHAT_DEEPSEEK,    /* <｜User｜>...<｜Assistant｜> */
    MOE_CHAT_HARMONY,     /* gpt-oss: <|start|>role<|message|>...<|end|> */
    MOE_CHAT_TULU,        /* OLMoE: <|user|>\n...\n<|assistant|>\n */
} moe_chat_format;

/* Recognise the family from a chat_template (NULL or unknown -> MOE_CHAT_PLAIN). */
moe_chat_format moe_chat_detect(const char *chat_template);
const char *moe_chat_name(moe_chat_format f);

/* Text for one user turn followed by the assistant's opening. bos is the BOS token string (may be
 * NULL); it is emitted on the first turn by the formats that expect it. Returns a malloc'd string. */
char *moe_chat_turn(moe_chat_format f, const char *bos, const char *system, const char *user, int first_turn);
/* Text that closes the assistant's reply before the next user turn (may be ""). */
const char *moe_chat_end_of_reply(moe_chat_format f);
#endif
