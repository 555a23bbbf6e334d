/* test_train_engine.c - a checkpoint written by training loads in the inference engine and gives the
 * same logits as the training forward: for each checkpoint layout and router, random weights (with
 * non-trivial norms and biases) are saved, loaded with moe_model_load and evaluated with a session;
 * every logit must agree within 1e-4 relative to the largest. */
#include "train/checkpoint.h"
#include "train_testutil.h"

static void run(const char *label, moe_tconfig *c) {
    moe_status st = moe_tconfig_finish(c);
    CHECK(st == MOE_OK, "%s: config: %s", label, moe_last_error());
    if (st) return;
    moe_tmodel *m;
    c->batch = 1;
    st = moe_tmodel_new(c, 1, &m);
    CHECK(st == MOE_OK, "%s: model: %s", label, moe_last_error());
    if (st) return;
    moe_tparams_init(m->p, 99);
    perturb(m->p, 5);
    int T = c->seq_len, V = c->vocab;
    int32_t tok[256];
    random_tokens(tok, T, V);
    float *ref = malloc(sizeof(float) * (size_t)T * V), *got = malloc(sizeof(float) * (size_t)T * V);
    st = moe_tmodel_logits(m, tok, ref);
    CHECK(st == MOE_OK, "%s: forward: %s", label, moe_last_error());
    const char *dir = scratch_dir(label);
    st = moe_ckpt_save_model(m->p, dir);
    CHECK(st == MOE_OK, "%s: save: %s", label, moe_last_error());
    moe_model *em = NULL;
    moe_session *s = NULL;
    if (!st) st = moe_model_load(dir, &em);
    CHECK(st == MOE_OK, "%s: load: %s", label, moe_last_error());
    if (!st) st = moe_session_new(em, T, &s);
    if (!st) st = moe_session_eval(s, tok, T, got, 1);
    CHECK(st == MOE_OK, "%s: eval: %s", label, moe_last_error());
    if (!st) {
        double mx = 0, diff = 0;
        for (int i = 0; i < T * V; i++) {
            mx = fmax(mx, fabs(ref[i]));
            diff = fmax(diff, fabs((double)ref[i] - got[i]));
        }
        CHECK(diff <= 1e-4 * fmax(1.0, mx), "%s: engine logits differ by %g (largest logit %g)", label, diff, mx);
        printf("%-28s layout %-10s max |diff| %.3g (largest logit %.3g)\n", label, c->layout, diff, mx);
    }
    moe_session_free(s);
    moe_model_free(em);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    free(ref);
    free(got);
    moe_tmodel_free(m);
}

int main(void) {
    moe_tconfig c;
    tiny_config(&c, "softmax_topk");
    run("qwen3_moe_topk_shared", &c);
    tiny_config(&c, "softmax_topk");
    c.norm_topk = 0; c.n_shared = 0; c.n_dense_layers = 0;
    run("qwen3_moe_topk_nonorm", &c);
    tiny_config(&c, "softmax_topk");
    c.qk_norm = 0; c.n_shared = 0; c.n_dense_layers = 0; c.n_kv_heads = 2;
    run("mixtral", &c);
    tiny_config(&c, "deepseek_v3");
    c.routed_scaling = 2.5;
    run("dots1_deepseek", &c);
    /* DeepSeek-V3's router outside dots1: the layout's own router differs, so moe-specific keys */
    tiny_config(&c, "deepseek_v3");
    snprintf(c.layout, sizeof c.layout, "qwen3_moe");
    run("deepseek_router_qwen3_moe", &c);
    tiny_config(&c, "deepseek_v3");
    c.qk_norm = 0; c.n_dense_layers = 0; c.n_shared = 0;
    snprintf(c.layout, sizeof c.layout, "mixtral");
    run("deepseek_router_mixtral", &c);
    tiny_config(&c, "softmax_topk");
    c.n_experts = 0;
    run("dense", &c);
    tiny_config(&c, "softmax_topk");
    c.seq_len = 64; c.d_model = 48; c.n_heads = 3; c.n_kv_heads = 3; c.n_experts = 6; c.top_k = 3; c.d_expert = 20;
    run("qwen3_moe_wider", &c);
    static const char *zoo[] = {"switch", "expert_choice", "base", "soft", "hash", "thor", "top_p", "sparsemax", "aoe"};
    for (size_t i = 0; i < sizeof zoo / sizeof *zoo; i++) {
        char label[64];
        tiny_config(&c, zoo[i]);
        c.seq_len = 16; c.capacity_factor = 1.0; c.slots = 2; c.aoe_rank = 4; c.top_p = 0.7;
        if (!strcmp(zoo[i], "switch")) c.top_k = 1;
        snprintf(label, sizeof label, "zoo_%s", zoo[i]);
        run(label, &c);
        tiny_config(&c, zoo[i]);
        c.seq_len = 16; c.capacity_factor = 1.0; c.slots = 2; c.aoe_rank = 4; c.top_p = 0.7;
        c.qk_norm = 0; c.n_dense_layers = 0; c.n_shared = 0;
        snprintf(label, sizeof label, "zoo_%s_mixtral", zoo[i]);
        run(label, &c);
    }
    return g_fail;
}
