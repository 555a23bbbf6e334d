/* test_offload_rss.c - the expert memory budget holds, measured from outside the store.
 * A 4-layer, 16-expert model with 96 MiB of experts runs 48 decode steps with a 12 MiB expert budget.
 * The route hook reads VmRSS from /proc/self/status at every MoE layer; the peak growth over the
 * process's RSS before loading must stay within
 *     budget + non-expert bytes of the file + KV cache + 6 MiB overhead
 * (the overhead: scratch buffers, reader thread stacks, store tables, code pages touched for the
 * first time). The same run with every expert resident must break that bound (else this test could
 * not fail), and both runs must give bit-identical logits. */
#include "moe.h"
#include "unit/testgen.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define OVERHEAD (6ull << 20)

static uint64_t vm_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0, v;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1) kb = v;
    if (f) fclose(f);
    return kb * 1024;
}

static uint64_t g_peak;
static void sample(void *user, const moe_routing *r) {
    (void)user; (void)r;
    uint64_t v = vm_rss();
    if (v > g_peak) g_peak = v;
}

/* Greedy decode of n tokens after a short prompt; logits of every step into out[n][vocab]. */
static int run(const char *dir, const moe_load_options *o, int n, float *out, uint64_t *peak, moe_offload_stats *stats) {
    moe_model *m;
    if (moe_model_load_opts(dir, o, &m)) { fprintf(stderr, "load: %s\n", moe_last_error()); return -1; }
    moe_session *s;
    if (moe_session_new(m, 64, &s)) { fprintf(stderr, "session: %s\n", moe_last_error()); moe_model_free(m); return -1; }
    int vocab = moe_model_get_info(m)->vocab_size;
    g_peak = vm_rss();
    moe_session_set_route_hook(s, sample, NULL);
    int32_t tok[4] = {1, 2, 3, 4};
    int rc = moe_session_eval(s, tok, 4, out, 0) ? -1 : 0;
    for (int i = 1; i < n && !rc; i++) {
        const float *l = out + (size_t)(i - 1) * vocab;
        int32_t best = 0;
        for (int v = 1; v < vocab; v++) if (l[v] > l[best]) best = v;
        rc = moe_session_eval(s, &best, 1, out + (size_t)i * vocab, 0) ? -1 : 0;
    }
    if (rc) fprintf(stderr, "eval: %s\n", moe_last_error());
    *peak = g_peak;
    moe_model_offload_stats(m, stats);
    moe_session_free(s);
    moe_model_free(m);
    return rc;
}

int main(void) {
    char dir[] = "/tmp/moe_rss_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    tg_model cfg = {256, 4, 4, 2, 64, 512, 16, 2, 512, 0, 7};
    if (tg_write_qwen3_moe(dir, &cfg)) { fprintf(stderr, "cannot write the test model: %s\n", moe_last_error()); return 1; }
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    stat(path, &sb);
    const int n = 48;
    float *a = calloc((size_t)n * cfg.vocab, 4), *b = calloc((size_t)n * cfg.vocab, 4);
    int fails = 0;
    const int64_t budget = 12ll << 20;
    const uint64_t kv = (uint64_t)cfg.layers * 64 * cfg.kv_heads * cfg.head_dim * 4 * 2;
    moe_offload_stats st;
    for (int prefetch = 0; prefetch <= 1; prefetch++) {
        uint64_t base = vm_rss(), peak;
        moe_load_options o = {budget, "lru", prefetch, 0, 0, 2};
        if (run(dir, &o, n, a, &peak, &st)) return 1;
        uint64_t non_expert = (uint64_t)sb.st_size - st.expert_bytes;
        uint64_t limit = (uint64_t)budget + non_expert + kv + OVERHEAD;
        printf("offloaded (prefetch %d): experts %.1f MiB, budget %.1f MiB (%d slots), non-expert %.1f MiB, KV %.2f MiB:"
               " RSS grew %.1f MiB, limit %.1f MiB; hit rate %.0f%%\n", prefetch, st.expert_bytes / MIB, budget / MIB,
               st.n_slots, non_expert / MIB, kv / MIB, (peak - base) / MIB, limit / MIB,
               100.0 * st.hits / (st.lookups ? st.lookups : 1));
        if (st.expert_bytes < 3 * (uint64_t)budget) { printf("FAIL: experts are not 3x the budget\n"); fails++; }
        if (peak - base > limit) { printf("FAIL: resident memory exceeded the budget\n"); fails++; }
        if (st.reads == 0) { printf("FAIL: no expert was read from disk\n"); fails++; }
        uint64_t base2 = vm_rss(), peak2;
        moe_load_options all = {0};
        if (run(dir, &all, n, b, &peak2, &st)) return 1;
        printf("resident: RSS grew %.1f MiB (must exceed %.1f MiB for this test to mean anything)\n",
               (peak2 - base2) / MIB, limit / MIB);
        if (peak2 - base2 <= limit) { printf("FAIL: the resident run fits the bound too\n"); fails++; }
        if (memcmp(a, b, sizeof(float) * (size_t)n * cfg.vocab)) { printf("FAIL: logits differ from the resident run\n"); fails++; }
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    free(a); free(b);
    if (fails) return 1;
    printf("ok\n");
    return 0;
}
