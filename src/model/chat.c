/* chat.c - fixed per-family chat formats (see chat.h). */
#include "model/chat.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAR "\xef\xbd\x9c" /* U+FF5C FULLWIDTH VERTICAL LINE, used in DeepSeek's special tokens */

moe_chat_format moe_chat_detect(const char *t) {
    if (!t) return MOE_CHAT_PLAIN;
    if (strstr(t, "<|im_start|>")) return MOE_CHAT_CHATML;
    if (strstr(t, "<|start|>") && strstr(t, "<|message|>")) return MOE_CHAT_HARMONY;
    if (strstr(t, "<" BAR "User" BAR ">")) return MOE_CHAT_DEEPSEEK;
    if (strstr(t, "<<SYS>>")) return MOE_CHAT_LLAMA2;
    if (strstr(t, "[INST]")) return MOE_CHAT_MISTRAL;
    if (strstr(t, "<|user|>") && strstr(t, "<|assistant|>")) return MOE_CHAT_TULU;
    return MOE_CHAT_PLAIN;
}

const char *moe_chat_name(moe_chat_format f) {
    static const char *names[] = {"plain", "chatml", "llama2", "mistral", "deepseek", "harmony", "tulu"};
    return (unsigned)f < sizeof names / sizeof *names ? names[f] : "?";
}

static char *fmt(const char *f, ...) {
    va_list ap, ap2;
    va_start(ap, f);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, f, ap2);
    va_end(ap2);
    return s;
}

char *moe_chat_turn(moe_chat_format f, const char *bos, const char *system, const char *user, int first_turn) {
    const char *b = first_turn && bos ? bos : "";
    int sys = first_turn && system && *system;
    const char *S = sys ? system : "";
    switch (f) {
    case MOE_CHAT_CHATML:
        return sys ? fmt("<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", S, user)
                   : fmt("<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", user);
    case MOE_CHAT_LLAMA2:
        return sys ? fmt("%s[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", b, S, user) : fmt("%s[INST] %s [/INST]", b, user);
    case MOE_CHAT_MISTRAL:
        return sys ? fmt("%s[INST] %s\n\n%s [/INST]", b, S, user) : fmt("%s[INST] %s [/INST]", b, user);
    case MOE_CHAT_DEEPSEEK:
        return fmt("%s%s<" BAR "User" BAR ">%s<" BAR "Assistant" BAR ">", b, S, user);
    case MOE_CHAT_HARMONY:
        return sys ? fmt("<|start|>system<|message|>%s<|end|><|start|>user<|message|>%s<|end|><|start|>assistant", S, user)
                   : fmt("<|start|>user<|message|>%s<|end|><|start|>assistant", user);
    case MOE_CHAT_TULU:
        return sys ? fmt("%s<|system|>\n%s\n<|user|>\n%s\n<|assistant|>\n", b, S, user) : fmt("%s<|user|>\n%s\n<|assistant|>\n", b, user);
    default:
        return sys ? fmt("%s%s\n\nUser: %s\nAssistant:", b, S, user) : fmt("%sUser: %s\nAssistant:", b, user);
    }
}

const char *moe_chat_end_of_reply(moe_chat_format f) {
    switch (f) {
    case MOE_CHAT_CHATML: return "<|im_end|>\n";
    case MOE_CHAT_HARMONY: return "<|end|>";
    case MOE_CHAT_TULU: return "\n";
    case MOE_CHAT_PLAIN: return "\n";
    default: return "";
    }
}
