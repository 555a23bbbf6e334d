/* router_deepseek.c - DeepSeek-V2 and V3 routing, following transformers' implementation exactly.
 * V2: s = softmax(logits); greedy top-k, or group-limited: group score = max of its experts, keep the
 *     topk_group best groups, zero the rest, top-k; w = s_chosen * routed_scaling_factor.
 * V3: s = sigmoid(logits); c = s + bias; group score = sum of the 2 largest c in the group; keep the
 *     topk_group best groups (others set to 0.0, as transformers does), top-k of c;
 *     w = s_chosen (without bias), / (sum + 1e-20) if norm_topk_prob, * routed_scaling_factor.
 * Training (V3 only): the bias is not learned by gradient but moved after each step by rate * sign of
 * (mean load - load of the expert), DeepSeek-V3's auxiliary-loss-free balancing; the weights'
 * gradient goes through the normalisation and the sigmoid: ds_j = sc (dw_j / S - sum_i dw_i s_i / S^2)
 * for chosen j (sc dw_j without normalisation), dlogit = ds s (1 - s). */
#include "moe/router.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Zero the entries of c outside the topk_group best groups. */
static void mask_groups(const moe_router *r, float *c, int top2_sum) {
    int E = r->p.n_experts, G = r->p.n_group, per = E / G;
    float gscore[1024] = {0};
    int gidx[1024] = {0}, keep[1024];
    for (int g = 0; g < G; g++) {
        const float *v = c + g * per;
        if (top2_sum) {
            int top[2];
            moe_topk(v, per, 2, top);
            gscore[g] = v[top[0]] + v[top[1]];
        } else {
            float m = v[0];
            for (int i = 1; i < per; i++) m = v[i] > m ? v[i] : m;
            gscore[g] = m;
        }
    }
    moe_topk(gscore, G, r->p.topk_group, gidx);
    memset(keep, 0, sizeof(int) * (size_t)G);
    for (int j = 0; j < r->p.topk_group; j++) keep[gidx[j]] = 1;
    for (int g = 0; g < G; g++)
        if (!keep[g])
            for (int i = 0; i < per; i++) c[g * per + i] = 0.0f;
}

static void select_v2(const moe_router *r, const float *logits, int n, float *scores, int *expert, float *weight) {
    int E = r->p.n_experts, k = r->p.top_k;
    float *tmp = malloc(sizeof(float) * (size_t)E);
    for (int t = 0; t < n; t++) {
        const float *l = logits + (size_t)t * E;
        float *s = scores + (size_t)t * E;
        int *ex = expert + (size_t)t * k;
        float *w = weight + (size_t)t * k;
        float m = l[0], sum = 0;
        for (int i = 1; i < E; i++) m = l[i] > m ? l[i] : m;
        for (int i = 0; i < E; i++) sum += (s[i] = expf(l[i] - m));
        float inv = 1.0f / sum; /* torch multiplies by the reciprocal */
        for (int i = 0; i < E; i++) s[i] *= inv;
        memcpy(tmp, s, sizeof(float) * (size_t)E);
        if (r->p.group_limited && r->p.n_group > 1) mask_groups(r, tmp, 0);
        moe_topk(tmp, E, k, ex);
        for (int j = 0; j < k; j++) w[j] = tmp[ex[j]] * (float)r->p.routed_scaling;
    }
    free(tmp);
}

static void select_v3(const moe_router *r, const float *logits, int n, float *scores, int *expert, float *weight) {
    int E = r->p.n_experts, k = r->p.top_k;
    float *c = malloc(sizeof(float) * (size_t)E);
    for (int t = 0; t < n; t++) {
        const float *l = logits + (size_t)t * E;
        float *s = scores + (size_t)t * E;
        int *ex = expert + (size_t)t * k;
        float *w = weight + (size_t)t * k;
        for (int i = 0; i < E; i++) {
            s[i] = 1.0f / (1.0f + expf(-l[i]));
            c[i] = s[i] + (r->score_bias ? r->score_bias[i] : 0.0f);
        }
        if (r->p.n_group >= 1) mask_groups(r, c, 1);
        moe_topk(c, E, k, ex);
        float sum = 0;
        for (int j = 0; j < k; j++) sum += (w[j] = s[ex[j]]);
        if (r->p.norm_topk_prob)
            for (int j = 0; j < k; j++) w[j] /= sum + 1e-20f;
        for (int j = 0; j < k; j++) w[j] *= (float)r->p.routed_scaling;
    }
    free(c);
}

static void backward_v3(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                        const float *d_probs, float *d_logits) {
    int E = r->p.n_experts, k = r->p.top_k;
    double sc = r->p.routed_scaling;
    for (int t = 0; t < in->n; t++) {
        const float *s = a->probs + (size_t)t * E;
        const int *ex = a->exp + (size_t)t * k;
        const float *dw = d_w + (size_t)t * k;
        float *dl = d_logits + (size_t)t * E;
        for (int e = 0; e < E; e++) dl[e] = d_probs ? d_probs[(size_t)t * E + e] : 0.0f;
        if (r->p.norm_topk_prob) {
            double S = 1e-20, dot = 0;
            for (int j = 0; j < k; j++) S += s[ex[j]];
            for (int j = 0; j < k; j++) dot += (double)dw[j] * s[ex[j]];
            for (int j = 0; j < k; j++) dl[ex[j]] += (float)(sc * (dw[j] / S - dot / (S * S)));
        } else {
            for (int j = 0; j < k; j++) dl[ex[j]] += (float)(sc * dw[j]);
        }
        for (int e = 0; e < E; e++) dl[e] *= s[e] * (1.0f - s[e]);
    }
}

static void update_v3(moe_router *r, const int *load, double rate) {
    int E = r->p.n_experts;
    if (!r->score_bias_rw) return;
    double mean = 0;
    for (int e = 0; e < E; e++) mean += load[e];
    mean /= E;
    for (int e = 0; e < E; e++)
        r->score_bias_rw[e] += (float)(load[e] < mean ? rate : load[e] > mean ? -rate : 0.0);
}

/* deepseek_v2 is inference-only: moe train has no backward for its group-limited greedy choice. */
const moe_router_ops moe_router_deepseek_v2 = {
    .name = "deepseek_v2", .summary = "softmax, (group-limited) greedy top-k, scaled",
    .select = select_v2, .kind = MOE_ROUTE_SPARSE};
const moe_router_ops moe_router_deepseek_v3 = {
    .name = "deepseek_v3", .summary = "sigmoid + bias-corrected group-limited top-k, normalised, scaled",
    .select = select_v3, .backward = backward_v3, .kind = MOE_ROUTE_SPARSE, .update = update_v3, .score_bias = 1,
    .trainable = 1, .hf_layouts = "dots1"};
