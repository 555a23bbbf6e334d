/* router_losses.c - balancing losses and routing statistics (see router_losses.h). */
#include "moe/router_losses.h"
#include <math.h>
#include <string.h>

/* p_hat = p / sum(p) per token; d(p) += (g - <g, p_hat>) / sum(p) for a gradient g on p_hat. */
static void add_through_norm(const float *p, const double *g, int E, float *dp) {
    double S = 0, dot = 0;
    for (int e = 0; e < E; e++) S += p[e];
    if (S <= 0) return;
    for (int e = 0; e < E; e++) dot += g[e] * p[e] / S;
    for (int e = 0; e < E; e++) dp[e] += (float)((g[e] - dot) / S);
}

double moe_loss_balance(const moe_assign *a, double coef, float *d_probs) {
    int n = a->n_tokens, E = a->n_experts;
    if (coef == 0 || a->n == 0 || n == 0) return 0;
    double f[E], P[E], g[E];
    memset(f, 0, sizeof f);
    memset(P, 0, sizeof P);
    for (int i = 0; i < a->n; i++) f[a->exp[i]] += 1.0 / a->n;
    for (int t = 0; t < n; t++) {
        const float *p = a->probs + (size_t)t * E;
        double S = 0;
        for (int e = 0; e < E; e++) S += p[e];
        if (S > 0)
            for (int e = 0; e < E; e++) P[e] += p[e] / S / n;
    }
    double L = 0;
    for (int e = 0; e < E; e++) {
        L += f[e] * P[e];
        g[e] = coef * E * f[e] / n;
    }
    for (int t = 0; t < n; t++) add_through_norm(a->probs + (size_t)t * E, g, E, d_probs + (size_t)t * E);
    return coef * E * L;
}

double moe_loss_z(const float *logits, int n, int L, double coef, float *d_logits) {
    if (coef == 0 || n == 0 || L == 0) return 0;
    double total = 0;
    for (int t = 0; t < n; t++) {
        const float *l = logits + (size_t)t * L;
        double mx = l[0], s = 0;
        for (int j = 1; j < L; j++) mx = l[j] > mx ? l[j] : mx;
        for (int j = 0; j < L; j++) s += exp(l[j] - mx);
        double lse = mx + log(s);
        total += lse * lse;
        /* d/dl_j lse^2 = 2 lse softmax_j */
        double c = coef * 2 * lse / n;
        for (int j = 0; j < L; j++) d_logits[(size_t)t * L + j] += (float)(c * exp(l[j] - mx) / s);
    }
    return coef * total / n;
}

double moe_loss_seq_balance(const moe_assign *a, int T, int k, double coef, float *d_probs) {
    int n = a->n_tokens, E = a->n_experts;
    if (coef == 0 || a->n == 0 || n == 0 || T <= 0) return 0;
    int nseq = (n + T - 1) / T;
    double f[E], P[E], g[E], total = 0;
    int i = 0; /* assignments are in token order */
    for (int s = 0; s < nseq; s++) {
        int t0 = s * T, t1 = t0 + T < n ? t0 + T : n, len = t1 - t0;
        memset(f, 0, sizeof f);
        memset(P, 0, sizeof P);
        for (; i < a->n && a->tok[i] < t1; i++) f[a->exp[i]] += (double)E / ((double)k * len);
        for (int t = t0; t < t1; t++) {
            const float *p = a->probs + (size_t)t * E;
            double S = 0;
            for (int e = 0; e < E; e++) S += p[e];
            if (S > 0)
                for (int e = 0; e < E; e++) P[e] += p[e] / S / len;
        }
        double L = 0;
        for (int e = 0; e < E; e++) {
            L += f[e] * P[e];
            g[e] = coef * f[e] / len / nseq;
        }
        total += coef * L / nseq;
        for (int t = t0; t < t1; t++) add_through_norm(a->probs + (size_t)t * E, g, E, d_probs + (size_t)t * E);
    }
    return total;
}

void moe_route_stats_of(const moe_assign *a, int *load, moe_route_stats *s) {
    int n = a->n_tokens, E = a->n_experts;
    memset(load, 0, sizeof(int) * (size_t)E);
    memset(s, 0, sizeof *s);
    if (n == 0 || E == 0) return;
    int covered = 0, last = -1;
    for (int i = 0; i < a->n; i++) {
        load[a->exp[i]]++;
        if (a->tok[i] != last) { covered++; last = a->tok[i]; }
    }
    double mean = 0, var = 0;
    for (int e = 0; e < E; e++) mean += load[e];
    mean /= E;
    for (int e = 0; e < E; e++) var += (load[e] - mean) * (load[e] - mean);
    var /= E;
    s->load_cv = mean > 0 ? sqrt(var) / mean : 0;
    s->dropped = a->dispatch ? 0 : 1.0 - (double)covered / n;
    s->per_token = (double)a->n / n;
    double H = 0;
    for (int t = 0; t < n; t++) {
        const float *p = a->probs + (size_t)t * E;
        double S = 0, h = 0;
        for (int e = 0; e < E; e++) S += p[e];
        if (S <= 0) continue;
        for (int e = 0; e < E; e++) {
            double q = p[e] / S;
            if (q > 0) h -= q * log(q);
        }
        H += h;
    }
    s->entropy = H / n;
}
