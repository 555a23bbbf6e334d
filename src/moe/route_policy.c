/* route_policy.c - dynamic routing and steering as a transform of the routing decision (see
 * route_policy.h for the order of the steps, docs/DYNAMIC.md for the rules).
 *
 * Everything works on the decision's assignments (tok, exp, w) and the router's probabilities, so it
 * holds for every sparse router; what differs between routers is read from their capability fields
 * (own_count, weights_normalised) and parameters (top_k, norm_topk_prob, routed_scaling). A decision
 * left unchanged by every step keeps its bits: nothing is re-run or re-sorted unless a step applies. */
#include "moe/route_policy.h"
#include "core/error.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

moe_status moe_route_policy_new(int n_layers, int n_experts, moe_route_policy **out) {
    *out = NULL;
    if (n_layers <= 0 || n_experts <= 0) return moe_fail(MOE_EUSAGE, "routing options: the model has no routed experts");
    moe_route_policy *p = calloc(1, sizeof *p);
    size_t LE = (size_t)n_layers * (size_t)n_experts;
    if (p) {
        p->n_layers = n_layers;
        p->n_experts = n_experts;
        p->k = calloc((size_t)n_layers, sizeof(int));
        p->disabled = calloc(LE, 1);
        p->forced = calloc(LE, 1);
        p->any_disabled = calloc((size_t)n_layers, 1);
        p->any_forced = calloc((size_t)n_layers, 1);
    }
    if (!p || !p->k || !p->disabled || !p->forced || !p->any_disabled || !p->any_forced) {
        moe_route_policy_free(p);
        return moe_fail(MOE_ENOMEM, "routing options: out of memory");
    }
    *out = p;
    return MOE_OK;
}

void moe_route_policy_free(moe_route_policy *p) {
    if (!p) return;
    free(p->k);
    free(p->disabled);
    free(p->forced);
    free(p->any_disabled);
    free(p->any_forced);
    free(p);
}

/* A whole decimal integer in [lo, hi] from s[0..len). */
static int parse_int(const char *s, size_t len, long lo, long hi, long *out) {
    char buf[32];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    for (size_t i = 0; i < len; i++)
        if ((buf[i] < '0' || buf[i] > '9') && !(i == 0 && buf[i] == '-')) return -1;
    errno = 0;
    char *end;
    long v = strtol(buf, &end, 10);
    if (errno || *end || v < lo || v > hi) return -2;
    *out = v;
    return 0;
}

/* One list of "LAYER:VALUE" items; calls set(l, v) for every MoE layer the item names. The value's
 * range is [vlo, vhi], named `what` in messages. */
typedef moe_status (*item_fn)(moe_route_policy *p, void *ctx, int layer, long v);

static moe_status parse_list(moe_route_policy *p, const char *flag, const char *spec, const unsigned char *is_moe,
                             const char *what, const char *noun, long vlo, long vhi, item_fn set, void *ctx) {
    if (!spec || !*spec) return moe_fail(MOE_EUSAGE, "%s: empty list (expected LAYER:%s,...)", flag, what);
    const char *s = spec;
    for (;;) {
        size_t len = strcspn(s, ",");
        const char *colon = memchr(s, ':', len);
        if (!colon) return moe_fail(MOE_EUSAGE, "%s: '%.*s' is not LAYER:%s", flag, (int)len, s, what);
        size_t ll = (size_t)(colon - s), vl = len - ll - 1;
        long layer = -1, v;
        int star = ll == 1 && s[0] == '*';
        int rl = star ? 0 : parse_int(s, ll, 0, p->n_layers - 1, &layer);
        if (rl == -1) return moe_fail(MOE_EUSAGE, "%s: '%.*s' is not LAYER:%s (LAYER a number or *)", flag, (int)len, s, what);
        if (rl == -2) return moe_fail(MOE_EUSAGE, "%s: layer %.*s is out of range (the model has %d layers)", flag,
                                      (int)ll, s, p->n_layers);
        if (!star && !is_moe[layer]) return moe_fail(MOE_EUSAGE, "%s: layer %ld has no routed experts", flag, layer);
        int rv = parse_int(colon + 1, vl, vlo, vhi, &v);
        if (rv == -1) return moe_fail(MOE_EUSAGE, "%s: '%.*s' is not LAYER:%s", flag, (int)len, s, what);
        if (rv == -2) return moe_fail(MOE_EUSAGE, "%s: %s %.*s is out of range (%ld to %ld)", flag, noun, (int)vl, colon + 1,
                                      vlo, vhi);
        for (int l = star ? 0 : (int)layer; l <= (star ? p->n_layers - 1 : (int)layer); l++)
            if (is_moe[l]) MOE_TRY(set(p, ctx, l, v));
        if (!s[len]) break;
        s += len + 1;
        if (!*s) return moe_fail(MOE_EUSAGE, "%s: the list ends with a comma", flag);
    }
    return MOE_OK;
}

static moe_status set_expert(moe_route_policy *p, void *ctx, int layer, long e) {
    ((unsigned char *)ctx)[(size_t)layer * p->n_experts + (size_t)e] = 1;
    return MOE_OK;
}

static moe_status set_k(moe_route_policy *p, void *ctx, int layer, long k) {
    (void)ctx;
    p->k[layer] = (int)k;
    return MOE_OK;
}

/* Recompute the per-layer summaries and refuse impossible combinations. */
static moe_status check_masks(moe_route_policy *p, const char *flag) {
    int E = p->n_experts;
    for (int l = 0; l < p->n_layers; l++) {
        const unsigned char *d = p->disabled + (size_t)l * E, *f = p->forced + (size_t)l * E;
        int nd = 0, nf = 0;
        for (int e = 0; e < E; e++) {
            nd += d[e];
            nf += f[e];
            if (d[e] && f[e]) return moe_fail(MOE_EUSAGE, "%s: expert %d of layer %d is both disabled and forced", flag, e, l);
        }
        if (nd == E) return moe_fail(MOE_EUSAGE, "%s: every expert of layer %d would be disabled", flag, l);
        p->any_disabled[l] = nd > 0;
        p->any_forced[l] = nf > 0;
    }
    return MOE_OK;
}

moe_status moe_route_policy_parse_experts(moe_route_policy *p, const char *flag, const char *spec,
                                          const unsigned char *is_moe, unsigned char *mask) {
    MOE_TRY(parse_list(p, flag, spec, is_moe, "EXPERT", "expert", 0, p->n_experts - 1, set_expert, mask));
    return check_masks(p, flag);
}

moe_status moe_route_policy_parse_k(moe_route_policy *p, const char *flag, const char *spec, const unsigned char *is_moe) {
    return parse_list(p, flag, spec, is_moe, "K", "k", 1, p->n_experts, set_k, NULL);
}

int moe_route_policy_active(const moe_route_policy *p) {
    if (!p) return 0;
    if (p->top_p > 0 || p->skip > 0 || p->capacity > 0) return 1;
    for (int l = 0; l < p->n_layers; l++)
        if (p->k[l] || p->any_disabled[l] || p->any_forced[l]) return 1;
    return 0;
}

int moe_route_policy_batch_dependent(const moe_route_policy *p) { return p && p->capacity > 0; }

/* ---- the steps ---- */

/* Run the router again on logits where the disabled experts' entries are -inf, with top_k = K where
 * the router honours top_k. Routers without one logit per expert (hash, AoE) are run as they are; the
 * disabled experts are removed from their choice afterwards. */
static moe_status rerun(const moe_router *R, const moe_route_in *in, moe_assign *a, const unsigned char *dis, int K) {
    moe_router R2 = *R;
    if (K > 0 && !R->ops->own_count) R2.p.top_k = K;
    int E = R->p.n_experts, n = in->n;
    moe_route_in in2 = *in;
    float *ml = NULL;
    if (dis && in->logits && moe_router_n_logits(R) == E) {
        ml = malloc(sizeof(float) * (size_t)n * (size_t)E);
        if (!ml) return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for masked logits", in->layer);
        memcpy(ml, in->logits, sizeof(float) * (size_t)n * (size_t)E);
        for (int t = 0; t < n; t++)
            for (int e = 0; e < E; e++)
                if (dis[e]) ml[(size_t)t * E + e] = -INFINITY;
        in2.logits = ml;
    }
    moe_status st = moe_router_assign(&R2, &in2, a);
    free(ml);
    return st;
}

/* Per token: experts in decreasing router probability (disabled ones left out), as many as top-p asks
 * (the fewest whose probability reaches top_p of the token's total), at most cap; weights
 * scaling * p, divided by the chosen ones' sum when the router renormalises. */
static moe_status select_by_prob(const moe_route_policy *P, const moe_router *R, moe_assign *a, int n,
                                 const unsigned char *dis, int cap) {
    int E = a->n_experts;
    int norm = R->p.norm_topk_prob || R->ops->weights_normalised;
    double scale = R->p.routed_scaling;
    int *order = malloc(sizeof(int) * (size_t)E);
    if (!order) return moe_fail(MOE_ENOMEM, "MoE layer: out of memory");
    a->n = 0;
    for (int t = 0; t < n; t++) {
        const float *p = a->probs + (size_t)t * E;
        moe_topk(p, E, E, order);
        double total = 0, cum = 0, S = 0;
        for (int j = 0; j < E; j++)
            if (!dis || !dis[order[j]]) total += p[order[j]];
        int i0 = a->n, cnt = 0;
        for (int j = 0; j < E && cnt < cap; j++) {
            int e = order[j];
            if (dis && dis[e]) continue;
            if (P->top_p > 0 && cnt > 0 && cum >= P->top_p * total) break;
            cum += p[e];
            a->tok[a->n] = t;
            a->exp[a->n++] = e;
            cnt++;
        }
        for (int i = i0; i < a->n; i++) S += p[a->exp[i]];
        for (int i = i0; i < a->n; i++) {
            double pe = p[a->exp[i]];
            a->w[i] = (float)(scale * (norm && S > 0 ? pe / S : pe));
        }
    }
    free(order);
    return MOE_OK;
}

/* Keep the assignments for which keep(i) holds, in order. */
static void compact(moe_assign *a, const unsigned char *keep) {
    int m = 0;
    for (int i = 0; i < a->n; i++)
        if (keep[i]) {
            a->tok[m] = a->tok[i];
            a->exp[m] = a->exp[i];
            a->w[m++] = a->w[i];
        }
    a->n = m;
}

static void drop_disabled(moe_assign *a, const unsigned char *dis, unsigned char *keep) {
    for (int i = 0; i < a->n; i++) keep[i] = !dis[a->exp[i]];
    compact(a, keep);
}

/* Drop weights below W; each token keeps its largest (the first of equal ones). */
static moe_status skip_small(moe_assign *a, double W, unsigned char *keep) {
    int T = a->n_tokens;
    int *best = malloc(sizeof(int) * (size_t)(T > 0 ? T : 1));
    if (!best) return moe_fail(MOE_ENOMEM, "MoE layer: out of memory");
    for (int t = 0; t < T; t++) best[t] = -1;
    for (int i = 0; i < a->n; i++) {
        int t = a->tok[i];
        if (best[t] < 0 || a->w[i] > a->w[best[t]]) best[t] = i;
    }
    for (int i = 0; i < a->n; i++) keep[i] = !((double)a->w[i] < W) || best[a->tok[i]] == i;
    free(best);
    compact(a, keep);
    return MOE_OK;
}

/* Capacity-Aware Inference: expert e keeps its C largest weights (ties: the earlier assignment);
 * the rest is dropped or, with reroute, given to the token's next expert by probability that is not
 * disabled, not already the token's and not full, weighted w * p_new / p_old. Assignments must be in
 * token order (each token's contiguous). */
static moe_status capacity(const moe_route_policy *P, moe_assign *a, const unsigned char *dis, unsigned char *keep) {
    int E = a->n_experts, n0 = a->n;
    if (n0 == 0) return MOE_OK;
    int C = (int)ceil(P->capacity * n0 / E);
    if (C < 1) C = 1;
    int *cnt = calloc((size_t)E + 1, sizeof(int)), *idx = malloc(sizeof(int) * (size_t)n0);
    int *fill = calloc((size_t)E, sizeof(int)), *order = malloc(sizeof(int) * (size_t)E);
    int *tstart = malloc(sizeof(int) * ((size_t)a->n_tokens + 1));
    if (!cnt || !idx || !fill || !order || !tstart) {
        free(cnt); free(idx); free(fill); free(order); free(tstart);
        return moe_fail(MOE_ENOMEM, "MoE layer: out of memory for capacity");
    }
    /* each expert's assignments, sorted by weight (descending, stable) */
    for (int i = 0; i < n0; i++) cnt[a->exp[i] + 1]++;
    for (int e = 0; e < E; e++) cnt[e + 1] += cnt[e];
    for (int i = 0; i < n0; i++) idx[cnt[a->exp[i]] + fill[a->exp[i]]++] = i;
    for (int e = 0; e < E; e++) {
        int *v = idx + cnt[e], m = cnt[e + 1] - cnt[e];
        for (int i = 1; i < m; i++) {
            int x = v[i], j = i;
            while (j > 0 && a->w[v[j - 1]] < a->w[x]) { v[j] = v[j - 1]; j--; }
            v[j] = x;
        }
        for (int r = 0; r < m; r++) keep[v[r]] = r < C;
        fill[e] = m < C ? m : C;
    }
    /* tokens' ranges of assignments */
    for (int t = 0; t <= a->n_tokens; t++) tstart[t] = 0;
    for (int i = 0; i < n0; i++) tstart[a->tok[i] + 1]++;
    for (int t = 0; t < a->n_tokens; t++) tstart[t + 1] += tstart[t];
    for (int i = 0; P->reroute && i < n0; i++) {
        if (keep[i]) continue;
        int t = a->tok[i], old = a->exp[i];
        const float *p = a->probs + (size_t)t * E;
        moe_topk(p, E, E, order);
        for (int j = 0; j < E; j++) {
            int e = order[j], has = 0;
            if ((dis && dis[e]) || fill[e] >= C || !(p[e] > 0)) continue;
            for (int q = tstart[t]; q < tstart[t + 1] && !has; q++) has = a->exp[q] == e;
            for (int q = n0; q < a->n && !has; q++) has = a->tok[q] == t && a->exp[q] == e;
            if (has) continue;
            fill[e]++;
            a->tok[a->n] = t;
            a->exp[a->n] = e;
            a->w[a->n] = p[old] > 0 ? (float)((double)a->w[i] * p[e] / p[old]) : a->w[i];
            keep[a->n++] = 1;
            break;
        }
    }
    free(cnt); free(idx); free(fill); free(order); free(tstart);
    compact(a, keep);
    return MOE_OK;
}

/* Every token gets the forced experts it lacks, weighted with its largest weight (scaling times its
 * largest probability when it has no expert left). Assignments must be in token order. */
static void force(const moe_router *R, moe_assign *a, const unsigned char *frc) {
    int E = a->n_experts, n0 = a->n, i = 0;
    for (int t = 0; t < a->n_tokens; t++) {
        int i0 = i;
        float wmax = -INFINITY;
        while (i < n0 && a->tok[i] == t) { if (a->w[i] > wmax) wmax = a->w[i]; i++; }
        if (i == i0) {
            const float *p = a->probs + (size_t)t * E;
            float pm = p[0];
            for (int e = 1; e < E; e++) pm = p[e] > pm ? p[e] : pm;
            wmax = (float)(R->p.routed_scaling * pm);
        }
        for (int e = 0; e < E; e++) {
            if (!frc[e]) continue;
            int has = 0;
            for (int q = i0; q < i && !has; q++) has = a->exp[q] == e;
            if (has) continue;
            a->tok[a->n] = t;
            a->exp[a->n] = e;
            a->w[a->n++] = wmax;
        }
    }
}

moe_status moe_route_policy_apply(void *user, const moe_layer *L, const moe_route_in *in, moe_assign *a) {
    const moe_route_policy *P = user;
    const moe_router *R = &L->router;
    int l = L->layer, E = a->n_experts, n = in->n;
    if (a->dispatch) return moe_fail(MOE_EINTERNAL, "MoE layer %d: routing options on a Soft MoE layer", l);
    if (l < 0 || l >= P->n_layers || E != P->n_experts)
        return moe_fail(MOE_EINTERNAL, "MoE layer %d: routing options made for %d layers of %d experts", l, P->n_layers,
                        P->n_experts);
    const unsigned char *dis = P->any_disabled[l] ? P->disabled + (size_t)l * E : NULL;
    const unsigned char *frc = P->any_forced[l] ? P->forced + (size_t)l * E : NULL;
    int K = P->k[l], changed = 0;
    int by_prob = P->top_p > 0 || (K > 0 && R->ops->own_count);
    /* disabled experts: the router runs on masked logits, so that its probabilities are those of the
     * experts left (a softmax renormalises over them); a by-probability choice then starts from those */
    if (dis || (!by_prob && K > 0 && K != R->p.top_k)) {
        MOE_TRY(rerun(R, in, a, dis, by_prob ? 0 : K));
        changed = 1;   /* route routers may leave their own order */
    }
    if (by_prob) MOE_TRY(select_by_prob(P, R, a, n, dis, K > 0 ? K : R->ops->own_count ? E : R->p.top_k));
    if (!dis && !P->skip && !P->capacity && !frc) {
        if (changed) moe_assign_sort_by_token(a);
        return MOE_OK;
    }
    unsigned char *keep = malloc((size_t)a->cap + 1);
    if (!keep) return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory", l);
    moe_status st = MOE_OK;
    moe_assign_sort_by_token(a);
    if (dis) drop_disabled(a, dis, keep);
    if (P->skip > 0) st = skip_small(a, P->skip, keep);
    if (st == MOE_OK && P->capacity > 0) st = capacity(P, a, dis, keep);
    if (st == MOE_OK && (P->capacity > 0 || frc)) moe_assign_sort_by_token(a);
    if (st == MOE_OK && frc) {
        force(R, a, frc);
        moe_assign_sort_by_token(a);
    }
    free(keep);
    return st;
}
