/* test_train_size.c - `moe train`'s size check (issue 9 item 15): the estimate of parameters,
 * gradients, AdamW moments and one step's activations agrees with what a training step really
 * allocates (within a factor of 2, measured with mallinfo2 over moe_tmodel_new and one forward and
 * backward, for dense, MoE, shared-expert and soft-router configs); sizes whose products overflow 32 or
 * 64 bits are refused in one line naming the flags and the estimate in GiB, without allocating. */
#include "core/error.h"
#include "train/tmodel.h"
#include "train/trainer.h"
#include "train_testutil.h"
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static size_t heap_bytes(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void measure(const char *label, const char *const *kv) {
    moe_tconfig c;
    moe_tconfig_defaults(&c);
    for (int i = 0; kv[i]; i += 2) CHECK(moe_tconfig_set(&c, kv[i], kv[i + 1]) == MOE_OK, "%s: set %s", label, kv[i]);
    CHECK(moe_tconfig_finish(&c) == MOE_OK, "%s: finish: %s", label, moe_last_error());
    double pb, ab;
    moe_train_estimate(&c, &pb, &ab);
    size_t before = heap_bytes();
    moe_tmodel *m;
    moe_status st = moe_tmodel_new(&c, c.batch, &m);
    CHECK(st == MOE_OK, "%s: model: %s", label, moe_last_error());
    if (st) return;
    moe_tparams_init(m->p, 1);
    int32_t *x = malloc(sizeof(int32_t) * (size_t)m->N), *y = malloc(sizeof(int32_t) * (size_t)m->N);
    random_tokens(x, m->N, c.vocab);
    random_tokens(y, m->N, c.vocab);
    double loss;
    st = moe_tmodel_forward(m, x, y, 1, &loss);
    CHECK(st == MOE_OK, "%s: forward: %s", label, moe_last_error());
    moe_tmodel_backward(m);
    double got = (double)(heap_bytes() - before), est = pb + ab;
    printf("%-10s estimate %8.1f MiB, allocated %8.1f MiB (ratio %.2f)\n", label, est / 1048576, got / 1048576, est / got);
    if (!getenv("MOE_TEST_SANITIZED"))   /* the sanitizers' allocator is not glibc's: no mallinfo2 */
        CHECK(est >= 0.5 * got && est <= 2.0 * got, "%s: estimate %.0f bytes, allocated %.0f", label, est, got);
    free(x); free(y);
    moe_tmodel_free(m);
}

static void refused(const char *label, const char *const *kv, const char *want) {
    moe_tconfig c;
    moe_tconfig_defaults(&c);
    for (int i = 0; kv[i]; i += 2) CHECK(moe_tconfig_set(&c, kv[i], kv[i + 1]) == MOE_OK, "%s: set %s", label, kv[i]);
    CHECK(moe_tconfig_finish(&c) == MOE_OK, "%s: finish: %s", label, moe_last_error());
    moe_status st = moe_train_check_size(&c, 64.0 * (1 << 30));   /* a 64 GiB machine */
    CHECK(st == MOE_EUSAGE, "%s: not refused (%d)", label, st);
    const char *e = moe_last_error();
    CHECK(strstr(e, want) != NULL, "%s: '%s' not in: %s", label, want, e);
    CHECK(strchr(e, '\n') == NULL, "%s: more than one line", label);
    printf("%-10s refused: %s\n", label, e);
}

int main(void) {
    static const char *const dense[] = {"d-model", "128", "layers", "2", "heads", "4", "d-ff", "512", "experts", "0",
                                        "seq-len", "128", "batch", "8", NULL};
    static const char *const moe[] = {"d-model", "128", "layers", "3", "heads", "4", "experts", "16", "top-k", "2",
                                      "d-expert", "128", "seq-len", "128", "batch", "8", "dense-layers", "1", NULL};
    static const char *const shared[] = {"d-model", "96", "layers", "2", "heads", "2", "experts", "8", "top-k", "2",
                                         "d-expert", "64", "shared", "2", "seq-len", "256", "batch", "4", "vocab", "2000", NULL};
    static const char *const soft[] = {"d-model", "64", "layers", "2", "heads", "2", "experts", "8", "router", "soft",
                                       "slots", "4", "d-expert", "64", "seq-len", "64", "batch", "4", NULL};
    measure("dense", dense);
    measure("moe", moe);
    measure("shared", shared);
    measure("soft", soft);
    static const char *const huge[] = {"d-model", "16384", "layers", "256", "experts", "4096", "top-k", "2", "d-expert",
                                       "1048576", "vocab", "1048576", NULL};
    refused("huge", huge, "--d-expert 1048576");
    refused("huge", huge, "GiB");
    static const char *const tokens[] = {"batch", "65536", "seq-len", "65536", NULL};
    refused("tokens", tokens, "--batch 65536 x --seq-len 65536 = 4294967296 tokens per step");
    static const char *const routing[] = {"batch", "65536", "seq-len", "256", "experts", "4096", "top-k", "1", NULL};
    refused("routing", routing, "routing entries");
    static const char *const attn[] = {"batch", "256", "seq-len", "65536", "heads", "256", "d-model", "4096", NULL};
    refused("attention", attn, "--batch 256 x --seq-len 65536");
    if (!g_fail) printf("ok\n");
    return g_fail;
}
