/* optim.c - AdamW, clipping and the schedule (see optim.h). */
#include "train/optim.h"
#include <math.h>

double moe_grad_norm(const moe_tparams *p) {
    double s = 0;
    for (int i = 0; i < p->n; i++) {
        const moe_tparam *t = &p->t[i];
        if (!t->trainable) continue;
        const float *g = p->grad + t->offset;
        double ts = 0;
        for (size_t j = 0; j < t->numel; j++) ts += (double)g[j] * g[j];
        s += ts;
    }
    return sqrt(s);
}

void moe_adamw_step(moe_tparams *p, const moe_tconfig *c, int64_t step, double lr, double grad_scale) {
    float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->adam_eps;
    float bc1 = (float)(1.0 - pow(c->beta1, (double)step)), bc2 = (float)(1.0 - pow(c->beta2, (double)step));
    float flr = (float)lr, wd = (float)(lr * c->weight_decay), gs = (float)grad_scale;
    for (int i = 0; i < p->n; i++) {
        const moe_tparam *t = &p->t[i];
        if (!t->trainable) continue;
        float *w = p->val + t->offset, *g = p->grad + t->offset, *m = p->m + t->offset, *v = p->v + t->offset;
        float decay = t->decay ? wd : 0.0f;
        long n = (long)t->numel;
        #pragma omp parallel for simd schedule(static) if (n > 65536)
        for (long j = 0; j < n; j++) {
            float gj = g[j] * gs;
            m[j] = b1 * m[j] + (1.0f - b1) * gj;
            v[j] = b2 * v[j] + (1.0f - b2) * gj * gj;
            float mh = m[j] / bc1, vh = v[j] / bc2;
            w[j] -= flr * mh / (sqrtf(vh) + eps) + decay * w[j];
        }
    }
}

double moe_lr_at(const moe_tconfig *c, int64_t step) {
    if (c->warmup > 0 && step <= c->warmup) return c->lr * (double)step / c->warmup;
    double span = (double)(c->steps - c->warmup);
    double prog = span > 0 ? (double)(step - c->warmup) / span : 1.0;
    if (prog > 1) prog = 1;
    return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1.0 + cos(M_PI * prog));
}
