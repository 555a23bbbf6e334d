/* router_base.c - BASE layers (Lewis et al. 2021, "BASE Layers: Simplifying Training of Large, Sparse
 * Models"). In training, the tokens of a batch are assigned to experts as a balanced linear
 * assignment problem: maximise sum_t logits[t][e(t)] with every expert taking n/E tokens (the first
 * n mod E experts one more), solved with Bertsekas' auction algorithm (experts as objects with
 * capacity; a token bids its margin over its second-best expert plus epsilon; a full expert evicts
 * its lowest bidder; prices are the lowest winning bid). At inference (as in the paper) each token
 * simply takes its highest-scoring expert. Output: x + sigmoid(logit[t][e]) * f_e(x), so the weight
 * is w = sigmoid(logit) and the router learns through it: dlogit = dw * w (1 - w).
 * probs (statistics and losses) = softmax(logits), with the softmax backward for their gradient.
 * The auction is exact up to tokens * epsilon; epsilon = 1e-4 of the logits' range. A bid budget of
 * 200 * tokens guards against pathological inputs: tokens still unassigned then go greedily to any
 * expert with room. */
#include "moe/router.h"
#include "core/error.h"
#include <math.h>
#include <string.h>

/* Balanced assignment of n tokens; owner[t] = expert. Scratch: itmp, ftmp. */
static void auction(const float *a, int n, int E, int *owner, int *itmp, float *ftmp) {
    int *cap = itmp, *cnt = cap + E, *queue = cnt + E;          /* [E], [E], [n] */
    float *price = ftmp, *bid = ftmp + E;                       /* [E], [n] */
    float lo = a[0], hi = a[0];
    for (size_t i = 0; i < (size_t)n * E; i++) { lo = a[i] < lo ? a[i] : lo; hi = a[i] > hi ? a[i] : hi; }
    float eps = (hi - lo) * 1e-4f + 1e-9f;
    for (int e = 0; e < E; e++) {
        cap[e] = n / E + (e < n % E);
        cnt[e] = 0;
        price[e] = 0;
    }
    int qh = 0, qn = n;   /* a ring of n: at most n tokens wait at once */
    for (int t = 0; t < n; t++) { owner[t] = -1; queue[t] = t; }
    long budget = 200L * n + 1000;
    while (qn > 0 && budget-- > 0) {
        int t = queue[qh];
        qh = (qh + 1) % n;
        qn--;
        const float *row = a + (size_t)t * E;
        int e1 = -1;
        float v1 = -INFINITY, v2 = -INFINITY;
        for (int e = 0; e < E; e++) {
            if (cap[e] == 0) continue;
            float v = row[e] - price[e];
            if (v > v1) { v2 = v1; v1 = v; e1 = e; }
            else if (v > v2) v2 = v;
        }
        if (e1 < 0) break;
        if (v2 == -INFINITY) v2 = v1;
        bid[t] = row[e1] - v2 + eps;                            /* = price + margin + eps */
        owner[t] = e1;
        if (cnt[e1] < cap[e1]) {
            cnt[e1]++;
        } else {
            /* evict the lowest bidder of e1 (the newcomer's bid beats the price, hence that bidder) */
            int worst = -1;
            for (int u = 0; u < n; u++)
                if (owner[u] == e1 && u != t && (worst < 0 || bid[u] < bid[worst])) worst = u;
            owner[worst] = -1;
            queue[(qh + qn) % n] = worst;
            qn++;
        }
        if (cnt[e1] == cap[e1]) {
            float m = INFINITY;
            for (int u = 0; u < n; u++)
                if (owner[u] == e1 && bid[u] < m) m = bid[u];
            price[e1] = m;
        }
    }
    /* out of budget: the rest greedily, wherever there is room */
    for (int t = 0; t < n; t++) {
        if (owner[t] >= 0) continue;
        int best = -1;
        for (int e = 0; e < E; e++)
            if (cnt[e] < cap[e] && (best < 0 || a[(size_t)t * E + e] > a[(size_t)t * E + best])) best = e;
        owner[t] = best;
        cnt[best]++;
    }
}

static moe_status route(const moe_router *r, const moe_route_in *in, moe_assign *a) {
    int n = in->n, E = r->p.n_experts;
    int *owner = a->itmp + 2 * E + n;
    for (int t = 0; t < n; t++) moe_softmax_row(in->logits + (size_t)t * E, a->probs + (size_t)t * E, E);
    if (in->training && n >= E) {
        auction(in->logits, n, E, owner, a->itmp, a->ftmp);
    } else {
        for (int t = 0; t < n; t++) moe_topk(in->logits + (size_t)t * E, E, 1, &owner[t]);
    }
    for (int t = 0; t < n; t++) {
        float l = in->logits[(size_t)t * E + owner[t]];
        a->tok[t] = t;
        a->exp[t] = owner[t];
        a->w[t] = 1.0f / (1.0f + expf(-l));
    }
    a->n = n;
    return MOE_OK;
}

static void backward(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                     const float *d_probs, float *d_logits) {
    int n = in->n, E = r->p.n_experts;
    for (int t = 0; t < n; t++) {
        if (d_probs) moe_softmax_row_bwd(a->probs + (size_t)t * E, d_probs + (size_t)t * E, d_logits + (size_t)t * E, E);
        else memset(d_logits + (size_t)t * E, 0, sizeof(float) * (size_t)E);
    }
    for (int i = 0; i < a->n; i++) {
        float w = a->w[i];
        d_logits[(size_t)a->tok[i] * E + a->exp[i]] += d_w[i] * w * (1.0f - w);
    }
}

const moe_router_ops moe_router_base = {
    .name = "base", .summary = "balanced assignment over the batch (auction), sigmoid gate",
    .route = route, .backward = backward, .kind = MOE_ROUTE_SPARSE, .trainable = 1};
