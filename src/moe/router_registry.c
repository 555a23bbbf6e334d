/* router_registry.c - the routers known by name, the general routing entry point, and helpers that
 * router files share (top-k, softmax and its backward, token-order sort, hashing). */
#include "moe/router.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/matmul.h"
#include <math.h>
#include <string.h>

extern const moe_router_ops moe_router_softmax_topk, moe_router_deepseek_v2, moe_router_deepseek_v3,
    moe_router_switch, moe_router_expert_choice, moe_router_base, moe_router_soft, moe_router_hash, moe_router_thor,
    moe_router_top_p, moe_router_sparsemax, moe_router_aoe, moe_router_sparsemixer, moe_router_sigmoid_topk;

static const moe_router_ops *const k_routers[] = {
    &moe_router_softmax_topk, &moe_router_deepseek_v2, &moe_router_deepseek_v3, &moe_router_switch,
    &moe_router_expert_choice, &moe_router_base, &moe_router_soft, &moe_router_hash, &moe_router_thor,
    &moe_router_top_p, &moe_router_sparsemax, &moe_router_aoe, &moe_router_sparsemixer, &moe_router_sigmoid_topk,
};

const moe_router_ops *moe_router_find(const char *name) {
    for (size_t i = 0; i < sizeof k_routers / sizeof *k_routers; i++)
        if (!strcmp(k_routers[i]->name, name)) return k_routers[i];
    return NULL;
}

const char *moe_router_names(void) {
    static char buf[512];
    if (!buf[0])
        for (size_t i = 0; i < sizeof k_routers / sizeof *k_routers; i++) {
            if (i) strcat(buf, ", ");
            strcat(buf, k_routers[i]->name);
        }
    return buf;
}

int moe_router_n_logits(const moe_router *r) {
    return r->ops->n_logits ? r->ops->n_logits(&r->p) : r->p.n_experts;
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
    moe_router_logits(r, x, n, r->p.n_experts, logits);
    r->ops->select(r, logits, n, scores, expert, weight);
}

void moe_router_logits(const moe_router *r, const float *x, int n, int nl, float *logits) {
    moe_matmul(logits, x, n, r->gate.dtype, r->gate.data, nl, r->p.d_model);
    if (r->gate_bias)
        for (int t = 0; t < n; t++)
            for (int e = 0; e < nl; e++) logits[(size_t)t * nl + e] += r->gate_bias[e];
}

/* Element counts of a decision's buffers, shared by the two allocators. */
typedef struct assign_sizes { size_t nE, ns, itmp; } assign_sizes;

static assign_sizes sizes_of(int n_tokens, int n_experts, int n_logits) {
    size_t nE = (size_t)n_tokens * (size_t)n_experts, nL = (size_t)n_tokens * (size_t)n_logits;
    return (assign_sizes){nE, nL > nE ? nL : nE, 2 * nE + (size_t)n_tokens + (size_t)n_experts + 2};
}

static void set_dims(moe_assign *a, int n_tokens, int n_experts, int n_logits) {
    memset(a, 0, sizeof *a);
    a->n_tokens = n_tokens;
    a->n_experts = n_experts;
    a->n_logits = n_logits;
    a->cap = (int)((size_t)n_tokens * (size_t)n_experts);
}

static int complete(const moe_assign *a) {
    return a->tok && a->exp && a->w && a->probs && a->save && a->itmp && a->ftmp && a->offset && a->row_tok &&
           a->row_src && a->row_w;
}

moe_status moe_assign_init(moe_assign *a, int n_tokens, int n_experts, int n_logits) {
    set_dims(a, n_tokens, n_experts, n_logits);
    assign_sizes z = sizes_of(n_tokens, n_experts, n_logits);
    a->tok = moe_alloc((z.nE + 1) * sizeof(int));
    a->exp = moe_alloc((z.nE + 1) * sizeof(int));
    a->w = moe_alloc((z.nE + 1) * sizeof(float));
    a->probs = moe_alloc((z.nE + 1) * sizeof(float));
    a->save = moe_alloc((z.ns + 1) * sizeof(float));
    a->itmp = moe_alloc(z.itmp * sizeof(int));
    a->ftmp = moe_alloc((z.ns + 1) * sizeof(float));
    a->offset = moe_alloc(((size_t)n_experts + 1) * sizeof(int));
    a->row_tok = moe_alloc((z.nE + 1) * sizeof(int));
    a->row_src = moe_alloc((z.nE + 1) * sizeof(int));
    a->row_w = moe_alloc((z.nE + 1) * sizeof(float));
    if (!complete(a)) {
        moe_assign_free(a);
        return moe_fail(MOE_ENOMEM, "router: out of memory for %d tokens x %d experts", n_tokens, n_experts);
    }
    return MOE_OK;
}

moe_status moe_assign_init_arena(moe_assign *a, int n_tokens, int n_experts, int n_logits, int soft, moe_arena *ar) {
    set_dims(a, n_tokens, n_experts, n_logits);
    a->in_arena = 1;
    assign_sizes z = sizes_of(n_tokens, n_experts, n_logits);
    a->tok = moe_arena_alloc(ar, (z.nE + 1) * sizeof(int));
    a->exp = moe_arena_alloc(ar, (z.nE + 1) * sizeof(int));
    a->w = moe_arena_alloc(ar, (z.nE + 1) * sizeof(float));
    a->probs = moe_arena_alloc(ar, (z.nE + 1) * sizeof(float));
    a->save = moe_arena_alloc(ar, (z.ns + 1) * sizeof(float));
    a->itmp = moe_arena_alloc(ar, z.itmp * sizeof(int));
    a->ftmp = moe_arena_alloc(ar, (z.ns + 1) * sizeof(float));
    a->offset = moe_arena_alloc(ar, ((size_t)n_experts + 1) * sizeof(int));
    a->row_tok = moe_arena_alloc(ar, (z.nE + 1) * sizeof(int));
    a->row_src = moe_arena_alloc(ar, (z.nE + 1) * sizeof(int));
    a->row_w = moe_arena_alloc(ar, (z.nE + 1) * sizeof(float));
    if (soft) {
        size_t nL = (size_t)n_tokens * (size_t)n_logits + 1;
        a->dispatch = moe_arena_alloc(ar, nL * sizeof(float));
        a->combine = moe_arena_alloc(ar, nL * sizeof(float));
    }
    if (!complete(a) || (soft && (!a->dispatch || !a->combine)))
        return moe_fail(MOE_ENOMEM, "router: out of memory for %d tokens x %d experts", n_tokens, n_experts);
    return MOE_OK;
}

void moe_assign_free(moe_assign *a) {
    if (!a->in_arena) {
        moe_free(a->tok); moe_free(a->exp); moe_free(a->w); moe_free(a->probs); moe_free(a->save);
        moe_free(a->dispatch); moe_free(a->combine); moe_free(a->itmp); moe_free(a->ftmp);
        moe_free(a->offset); moe_free(a->row_tok); moe_free(a->row_src); moe_free(a->row_w);
    }
    memset(a, 0, sizeof *a);
}

moe_status moe_assign_group(moe_assign *a, const char *who) {
    int E = a->n_experts, T = a->n_tokens;
    int *off = a->offset;
    if (a->dispatch) {   /* Soft MoE: every expert's S slots, in slot order */
        int S = E > 0 ? a->n_logits / E : 0;
        for (int e = 0; e <= E; e++) off[e] = e * S;
        a->rows = E * S;
        return MOE_OK;
    }
    if (a->n < 0 || a->n > a->cap) return moe_fail(MOE_EINTERNAL, "%s: %d assignments for room of %d", who, a->n, a->cap);
    memset(off, 0, sizeof(int) * (size_t)(E + 1));
    for (int i = 0; i < a->n; i++) {
        if (a->exp[i] < 0 || a->exp[i] >= E || a->tok[i] < 0 || a->tok[i] >= T)
            return moe_fail(MOE_EINTERNAL, "%s: assignment %d sends token %d to expert %d (%d tokens, %d experts)", who,
                            i, a->tok[i], a->exp[i], T, E);
        off[a->exp[i] + 1]++;
    }
    for (int e = 0; e < E; e++) off[e + 1] += off[e];
    /* place rows with a running cursor per expert (offset[e] itself), then shift the offsets back */
    for (int i = 0; i < a->n; i++) {
        int r = off[a->exp[i]]++;
        a->row_tok[r] = a->tok[i];
        a->row_w[r] = a->w[i];
        a->row_src[r] = i;
    }
    for (int e = E; e > 0; e--) off[e] = off[e - 1];
    off[0] = 0;
    a->rows = a->n;
    return MOE_OK;
}

int moe_router_native_layout(const moe_router_ops *ops, const char *layout) {
    const char *s = ops ? ops->hf_layouts : NULL;
    size_t n = strlen(layout);
    while (s && *s) {
        while (*s == ' ') s++;
        size_t w = strcspn(s, " ");
        if (w == n && !strncmp(s, layout, n)) return 1;
        s += w;
    }
    return 0;
}

moe_status moe_router_assign(const moe_router *r, const moe_route_in *in, moe_assign *out) {
    out->n = 0;
    if (r->ops->route) return r->ops->route(r, in, out);
    /* fixed top-k: the select() of the inference routers, laid out token-major (a = t*k + j) */
    int k = r->p.top_k, n = in->n;
    if ((size_t)n * k > (size_t)out->cap) return moe_fail(MOE_EINTERNAL, "router %s: assignment buffer too small", r->ops->name);
    r->ops->select(r, in->logits, n, out->probs, out->exp, out->w);
    for (int a = 0; a < n * k; a++) out->tok[a] = a / k;
    out->n = n * k;
    return MOE_OK;
}

void moe_softmax_row(const float *x, float *y, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0;
    for (int i = 0; i < n; i++) s += (y[i] = expf(x[i] - m));
    float inv = 1.0f / s; /* torch multiplies by the reciprocal */
    for (int i = 0; i < n; i++) y[i] *= inv;
}

void moe_softmax_row_bwd(const float *y, const float *dy, float *dx, int n) {
    double dot = 0;
    for (int i = 0; i < n; i++) dot += (double)dy[i] * y[i];
    for (int i = 0; i < n; i++) dx[i] = y[i] * (dy[i] - (float)dot);
}

void moe_topk_weights_bwd(const float *p, const int *ex, const float *dw, int k, int norm, double scale, float *dp) {
    if (norm) {
        double S = 0, dot = 0;
        for (int j = 0; j < k; j++) S += p[ex[j]];
        for (int j = 0; j < k; j++) dot += (double)dw[j] * p[ex[j]] / S;
        for (int j = 0; j < k; j++) dp[ex[j]] += (float)(scale / S * (dw[j] - dot));
    } else {
        for (int j = 0; j < k; j++) dp[ex[j]] += (float)(scale * dw[j]);
    }
}

void moe_assign_add_distinct(moe_assign *a, int first, int t, uint64_t h, int E, int k) {
    int e = (int)(h % (uint64_t)E);
    for (int again = 1; again;) {
        again = 0;
        for (int i = first; i < a->n; i++)
            if (a->exp[i] == e) { e = (e + 1) % E; again = 1; }
    }
    a->tok[a->n] = t;
    a->exp[a->n] = e;
    a->w[a->n++] = 1.0f / k;
    a->probs[(size_t)t * E + e] = 1.0f / k;
}

void moe_router_softmax_weight_bwd(const moe_router *r, const moe_route_in *in, const moe_assign *a, const float *d_w,
                                   const float *d_probs, float *d_logits) {
    int n = in->n, E = r->p.n_experts;
    float *dp = a->ftmp;
    for (size_t i = 0; i < (size_t)n * E; i++) dp[i] = d_probs ? d_probs[i] : 0.0f;
    for (int i = 0; i < a->n; i++) dp[(size_t)a->tok[i] * E + a->exp[i]] += d_w[i] * (float)r->p.routed_scaling;
    for (int t = 0; t < n; t++)
        moe_softmax_row_bwd(a->probs + (size_t)t * E, dp + (size_t)t * E, d_logits + (size_t)t * E, E);
}

void moe_assign_sort_by_token(moe_assign *a) {
    int n = a->n, T = a->n_tokens;
    int *cnt = a->itmp, *perm = a->itmp + T + 1, *ibuf = perm + a->cap;   /* [T+1], [cap], [cap] */
    memset(cnt, 0, sizeof(int) * (size_t)(T + 1));
    for (int i = 0; i < n; i++) cnt[a->tok[i] + 1]++;
    for (int t = 0; t < T; t++) cnt[t + 1] += cnt[t];
    for (int i = 0; i < n; i++) perm[cnt[a->tok[i]]++] = i;
    for (int i = 0; i < n; i++) ibuf[i] = a->tok[perm[i]];
    memcpy(a->tok, ibuf, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) ibuf[i] = a->exp[perm[i]];
    memcpy(a->exp, ibuf, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) a->ftmp[i] = a->w[perm[i]];
    memcpy(a->w, a->ftmp, sizeof(float) * (size_t)n);
}

uint64_t moe_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t moe_rng_next(uint64_t *s) {
    uint64_t x = *s ? *s : 0x853c49e6748fea9bULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}
