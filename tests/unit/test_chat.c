/* test_chat.c - chat format detection on the real templates shipped with the shared tokenizers, and
 * the exact text of one turn per format. */
#include "model/chat.h"
#include "io/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static void expect_turn(moe_chat_format f, const char *bos, const char *sys, const char *user, int first, const char *want) {
    char *got = moe_chat_turn(f, bos, sys, user, first);
    CHECK(got && strcmp(got, want) == 0, "%s turn: got [%s] want [%s]", moe_chat_name(f), got ? got : "(null)", want);
    free(got);
}

static void detect_file(const char *dir, const char *name, moe_chat_format want) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer_config.json", dir, name);
    cJSON *root;
    if (moe_json_parse_file(path, 64u << 20, &root) != MOE_OK) { CHECK(0, "%s", moe_last_error()); return; }
    const char *t = NULL;
    moe_json_str(path, root, "chat_template", 0, NULL, &t);
    CHECK(moe_chat_detect(t) == want, "%s: detected %s, want %s", name, moe_chat_name(moe_chat_detect(t)), moe_chat_name(want));
    cJSON_Delete(root);
}

int main(void) {
    const char *shared = getenv("MOE_SHARED_DATA");
    if (shared && *shared) {
        detect_file(shared, "qwen3", MOE_CHAT_CHATML);
        detect_file(shared, "deepseek_v3", MOE_CHAT_DEEPSEEK);
    } else {
        printf("MOE_SHARED_DATA not set: skipping detection on the real templates\n");
    }
    CHECK(moe_chat_detect(NULL) == MOE_CHAT_PLAIN, "NULL template");
    CHECK(moe_chat_detect("{{ '[INST] ' + m + ' [/INST]' }}") == MOE_CHAT_MISTRAL, "mistral");
    CHECK(moe_chat_detect("<<SYS>>\\n [INST]") == MOE_CHAT_LLAMA2, "llama2");
    CHECK(moe_chat_detect("<|start|>{{role}}<|message|>") == MOE_CHAT_HARMONY, "harmony");
    CHECK(moe_chat_detect("<|user|>\\n<|assistant|>") == MOE_CHAT_TULU, "tulu");
    expect_turn(MOE_CHAT_CHATML, NULL, "Be brief.", "Hi", 1,
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    expect_turn(MOE_CHAT_CHATML, NULL, "Be brief.", "Again", 0, "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n");
    expect_turn(MOE_CHAT_LLAMA2, "<s>", "S", "Hi", 1, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]");
    expect_turn(MOE_CHAT_MISTRAL, "<s>", NULL, "Hi", 1, "<s>[INST] Hi [/INST]");
    expect_turn(MOE_CHAT_DEEPSEEK, "<B>", "S", "Hi", 1, "<B>S<\xef\xbd\x9cUser\xef\xbd\x9c>Hi<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>");
    expect_turn(MOE_CHAT_HARMONY, NULL, NULL, "Hi", 1, "<|start|>user<|message|>Hi<|end|><|start|>assistant");
    expect_turn(MOE_CHAT_TULU, NULL, NULL, "Hi", 1, "<|user|>\nHi\n<|assistant|>\n");
    expect_turn(MOE_CHAT_PLAIN, NULL, NULL, "Hi", 1, "User: Hi\nAssistant:");
    CHECK(strcmp(moe_chat_end_of_reply(MOE_CHAT_CHATML), "<|im_end|>\n") == 0, "chatml end");
    if (failures) { printf("%d failures\n", failures); return 1; }
    printf("chat ok\n");
    return 0;
}
