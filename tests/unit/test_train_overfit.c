/* test_train_overfit.c - a tiny MoE model memorises a tiny batch: 120 AdamW steps on the same two
 * sequences must take the cross-entropy from about ln(256) = 5.5 to below 0.05. A wrong sign or a
 * missing term anywhere in the backward pass keeps the loss high; this catches what the gradient
 * check's few coordinates could miss. Runs for the default router and for DeepSeek-style routing. */
#include "train/optim.h"
#include "train_testutil.h"

static void run(const char *router) {
    moe_tconfig c;
    tiny_config(&c, router);
    c.vocab = 256; c.d_model = 32; c.seq_len = 16; c.batch = 2; c.n_heads = 4; c.n_kv_heads = 2;
    c.d_ff = 64; c.d_expert = 32; c.init_std = 0.05; c.lr = 1e-2; c.min_lr = 1e-2; c.warmup = 0; c.steps = 120;
    c.weight_decay = 0; c.grad_clip = 1.0; c.bias_rate = 1e-3;
    CHECK(moe_tconfig_finish(&c) == MOE_OK, "%s: config: %s", router, moe_last_error());
    moe_tmodel *m;
    if (moe_tmodel_new(&c, c.batch, &m)) { CHECK(0, "%s: %s", router, moe_last_error()); return; }
    moe_tparams_init(m->p, 3);
    const char *text = "It is a truth universally acknowledged, that a single man in possession of a good fortune";
    int32_t x[32], y[32];
    for (int i = 0; i < 32; i++) { x[i] = (unsigned char)text[i + (i >= 16 ? 20 : 0)]; y[i] = (unsigned char)text[i + 1 + (i >= 16 ? 20 : 0)]; }
    double first = 0, loss = 0;
    for (int step = 1; step <= c.steps; step++) {
        memset(m->p->grad, 0, sizeof(float) * m->p->total);
        if (moe_tmodel_forward(m, x, y, 1, &loss)) { CHECK(0, "%s: forward: %s", router, moe_last_error()); break; }
        if (step == 1) first = loss;
        moe_tmodel_backward(m);
        double norm = moe_grad_norm(m->p);
        moe_adamw_step(m->p, &c, step, moe_lr_at(&c, step), norm > c.grad_clip ? c.grad_clip / norm : 1.0);
        for (int l = 0; l < c.n_layers; l++) {
            moe_tmoe *mo = &m->act[l].moe;
            if (mo->N && mo->router.ops->update) mo->router.ops->update(&mo->router, mo->load, c.bias_rate);
        }
    }
    printf("%-14s loss %.4f -> %.4f after %d steps\n", router, first, loss, c.steps);
    CHECK(first > 5.0 && loss < 0.05, "%s: loss went from %.4f to %.4f", router, first, loss);
    moe_tmodel_free(m);
}

int main(void) {
    run("softmax_topk");
    run("deepseek_v3");
    return g_fail;
}
