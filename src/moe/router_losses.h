/* router_losses.h - the auxiliary losses that keep routers balanced, and the routing statistics.
 * Each loss returns its value and adds its gradient into a caller buffer; the coefficient is applied
 * inside. Probabilities are normalised per token first (a no-op for softmax routers, the DeepSeek
 * normalisation s / sum s for sigmoid ones), with the gradient taken through that normalisation. */
#ifndef MOE_MOE_ROUTER_LOSSES_H
#define MOE_MOE_ROUTER_LOSSES_H
#include "moe/router.h"

/* Switch Transformer (Fedus et al. 2021): L = coef * E * sum_i f_i P_i, f_i the share of the batch's
 * assignments that went to expert i, P_i the mean normalised probability of expert i. f is constant;
 * the gradient flows through P. d_probs [n][E] += dL/dprobs. */
double moe_loss_balance(const moe_assign *a, double coef, float *d_probs);
/* Router z-loss (ST-MoE, Zoph et al. 2022): L = coef * mean_t logsumexp(logits_t)^2. d_logits += dL. */
double moe_loss_z(const float *logits, int n, int n_logits, double coef, float *d_logits);
/* DeepSeek-V3 sequence-wise balance loss: for each sequence of T tokens,
 * L_s = coef * sum_i f_i P_i with f_i = E / (k T) * (tokens of the sequence routed to i) and
 * P_i = mean over the sequence of the normalised scores; the mean of L_s over sequences. */
double moe_loss_seq_balance(const moe_assign *a, int T, int k, double coef, float *d_probs);

typedef struct moe_route_stats {
    double load_cv;      /* coefficient of variation of assignments per expert (std / mean) */
    double dropped;      /* fraction of tokens that no routed expert processed */
    double entropy;      /* mean over tokens of the entropy (nats) of the normalised router probabilities */
    double per_token;    /* expert applications per token: assignments / tokens (Soft MoE: slots / tokens) */
} moe_route_stats;

/* load [E] receives the assignments per expert. */
void moe_route_stats_of(const moe_assign *a, int *load, moe_route_stats *s);
#endif
