/* sampler.c - see sampler.h. Candidates are sorted only as far as needed: top-k uses a partial
 * selection; top-p sorts the survivors by probability. */
#include "model/sampler.h"
#include "core/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(moe_sampler *s) {
    uint64_t *q = s->s, r = rotl(q[1] * 5, 7) * 9, t = q[1] << 17;
    q[2] ^= q[0]; q[3] ^= q[1]; q[1] ^= q[2]; q[0] ^= q[3];
    q[2] ^= t;
    q[3] = rotl(q[3], 45);
    return r;
}

double moe_sampler_uniform(moe_sampler *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

int moe_sampler_init(moe_sampler *s, const moe_sampler_params *p, int vocab) {
    s->p = *p;
    s->vocab = vocab;
    s->allowed = NULL;
    s->n_allowed = 0;
    uint64_t z = p->seed;
    for (int i = 0; i < 4; i++) { /* splitmix64 seeding */
        z += 0x9e3779b97f4a7c15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        s->s[i] = x ^ (x >> 31);
    }
    s->idx = malloc(sizeof(int) * (size_t)vocab);
    s->prob = malloc(sizeof(float) * (size_t)vocab);
    if (!s->idx || !s->prob) { moe_sampler_free(s); return -1; }
    return 0;
}

void moe_sampler_free(moe_sampler *s) {
    free(s->idx);
    free(s->prob);
    free(s->allowed);
    s->idx = NULL;
    s->prob = NULL;
    s->allowed = NULL;
    s->n_allowed = 0;
}

int moe_sampler_restrict(moe_sampler *s, const unsigned char *ok) {
    int n = 0;
    for (int i = 0; i < s->vocab; i++) n += ok[i] != 0;
    if (!n) return -1;
    int *a = malloc(sizeof(int) * (size_t)n);
    if (!a) return -1;
    n = 0;
    for (int i = 0; i < s->vocab; i++)
        if (ok[i]) a[n++] = i;
    free(s->allowed);
    s->allowed = a;
    s->n_allowed = n;
    return 0;
}

int moe_sampler_restrict_to_tokenizer(moe_sampler *s, const moe_tokenizer *t) {
    unsigned char *ok = malloc((size_t)s->vocab);
    if (!ok) return -1;
    int all = 1;
    for (int i = 0; i < s->vocab; i++) {
        ok[i] = moe_tokenizer_piece(t, i, NULL) != NULL;
        all &= ok[i];
    }
    int r = all ? 0 : moe_sampler_restrict(s, ok);
    free(ok);
    return r;
}

/* The best candidate (the first of equals) among idx[0..n). */
static int argmax_of(const float *x, const int *idx, int n) {
    int b = idx[0];
    for (int i = 1; i < n; i++)
        if (x[idx[i]] > x[b]) b = idx[i];
    return b;
}

static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const float *prob = ctx;
    float x = prob[*(const int *)a], y = prob[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int *)a - *(const int *)b);
}

/* Move the k largest logits to idx[0..k) (unordered). */
static void select_top_k(const float *logits, int *idx, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) { /* quickselect on idx by logits, descending */
        float pivot = logits[idx[(lo + hi) / 2]];
        int i = lo, j = hi;
        while (i <= j) {
            while (logits[idx[i]] > pivot) i++;
            while (logits[idx[j]] < pivot) j--;
            if (i <= j) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

int moe_sampler_next(moe_sampler *s, const float *logits) {
    const moe_sampler_params *p = &s->p;
    int V = s->allowed ? s->n_allowed : s->vocab;   /* the candidates: allowed ids, or all */
    if (s->allowed) memcpy(s->idx, s->allowed, sizeof(int) * (size_t)V);
    else
        for (int i = 0; i < V; i++) s->idx[i] = i;
    if (p->temperature <= 0) return argmax_of(logits, s->idx, V);
    int n = V;
    if (p->top_k > 0 && p->top_k < V) {
        select_top_k(logits, s->idx, V, p->top_k);
        n = p->top_k;
    }
    /* softmax of logits / T over the candidates */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, logits[s->idx[i]]);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        int t = s->idx[i];
        s->prob[t] = (float)exp((logits[t] - mx) / p->temperature);
        sum += s->prob[t];
    }
    for (int i = 0; i < n; i++) s->prob[s->idx[i]] = (float)(s->prob[s->idx[i]] / sum);
    if (p->top_p < 1.0 || p->min_p > 0) {
        qsort_r(s->idx, (size_t)n, sizeof(int), by_prob_desc, s->prob);
        if (p->top_p < 1.0) { /* smallest prefix whose mass reaches top_p (at least one token) */
            double c = 0;
            int m = 0;
            while (m < n) { c += s->prob[s->idx[m++]]; if (c >= p->top_p) break; }
            n = m;
        }
        if (p->min_p > 0) {
            float thr = (float)(p->min_p * s->prob[s->idx[0]]);
            int m = 1;
            while (m < n && s->prob[s->idx[m]] >= thr) m++;
            n = m;
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += s->prob[s->idx[i]];
    double r = moe_sampler_uniform(s) * total, c = 0;
    for (int i = 0; i < n; i++) {
        c += s->prob[s->idx[i]];
        if (r < c) return s->idx[i];
    }
    return s->idx[n - 1];
}

/* ---- the public face (moe.h): the same sampler behind an opaque handle ---------------------- */

struct moe_token_sampler {
    moe_sampler s;
};

moe_status moe_token_sampler_new(const moe_sampling *p, int vocab_size, moe_token_sampler **out) {
    *out = NULL;
    if (!p || vocab_size <= 0) return moe_fail(MOE_EUSAGE, "sampler: no parameters or an empty vocabulary");
    if (isnan(p->temperature) || isnan(p->top_p) || isnan(p->min_p))
        return moe_fail(MOE_EUSAGE, "sampler: temperature, top_p and min_p must be numbers");
    moe_token_sampler *t = calloc(1, sizeof *t);
    moe_sampler_params sp = {p->temperature, p->top_k, p->top_p, p->min_p, p->seed};
    if (!t || moe_sampler_init(&t->s, &sp, vocab_size)) {
        free(t);
        return moe_fail(MOE_ENOMEM, "sampler: out of memory for %d tokens", vocab_size);
    }
    *out = t;
    return MOE_OK;
}

int32_t moe_token_sampler_next(moe_token_sampler *t, const float *logits) { return moe_sampler_next(&t->s, logits); }

void moe_token_sampler_free(moe_token_sampler *t) {
    if (!t) return;
    moe_sampler_free(&t->s);
    free(t);
}
