/* router_registry.c - the routers known by name. */
#include "moe/router.h"
#include "core/matmul.h"
#include <string.h>

extern const moe_router_ops moe_router_softmax_topk, moe_router_deepseek_v2, moe_router_deepseek_v3;

static const moe_router_ops *const k_routers[] = {
    &moe_router_softmax_topk, &moe_router_deepseek_v2, &moe_router_deepseek_v3,
};

const moe_router_ops *moe_router_find(const char *name) {
    for (size_t i = 0; i < sizeof k_routers / sizeof *k_routers; i++)
        if (!strcmp(k_routers[i]->name, name)) return k_routers[i];
    return NULL;
}

void moe_topk(const float *v, int n, int k, int *idx) {
    /* insertion into a sorted list of k: O(n k), fine for the expert counts of real models */
    int m = 0;
    for (int i = 0; i < n; i++) {
        float x = v[i];
        if (m == k && !(x > v[idx[k - 1]])) continue;
        int j = m < k ? m++ : k - 1;
        while (j > 0 && x > v[idx[j - 1]]) { idx[j] = idx[j - 1]; j--; }
        idx[j] = i;
    }
}

void moe_router_route(const moe_router *r, const float *x, int n, float *logits, float *scores, int *expert,
                      float *weight) {
    moe_matmul(logits, x, n, r->gate.dtype, r->gate.data, r->p.n_experts, r->p.d_model);
    r->ops->select(r, logits, n, scores, expert, weight);
}
