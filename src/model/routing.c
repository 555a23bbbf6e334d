/* routing.c - the model's routing options (moe_model_set_routing): checks them against the model and
 * turns them into the routing policy (moe/route_policy.h) that every MoE layer applies to its decision,
 * plus the counters of experts executed. Per-layer k from the weights alone ("auto:K") is lexi.c's. */
#include "core/error.h"
#include "model/lexi.h"
#include "model/model.h"
#include "moe/route_policy.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static moe_status check_number(const char *name, double v, double lo, int lo_open, double hi) {
    if (!isfinite(v) || v < lo || (lo_open && v == lo) || v > hi)
        return moe_fail(MOE_EUSAGE, "%s %g is outside %s%g, %g]", name, v, lo_open ? "(" : "[", lo, hi);
    return MOE_OK;
}

/* The options into p (checked against the model's layers and routers). */
static moe_status build(moe_model *m, const moe_route_options *o, const unsigned char *is_moe, moe_route_policy *p) {
    if (o->top_p != 0) MOE_TRY(check_number("--expert-top-p", o->top_p, 0, 1, 1));
    if (o->skip_threshold != 0) MOE_TRY(check_number("--skip-threshold", o->skip_threshold, 0, 1, 1e30));
    if (o->capacity != 0) MOE_TRY(check_number("--capacity", o->capacity, 0, 1, 1e6));
    if (o->reroute && o->capacity == 0) return moe_fail(MOE_EUSAGE, "--reroute needs --capacity");
    p->top_p = o->top_p;
    p->skip = o->skip_threshold;
    p->capacity = o->capacity;
    p->reroute = o->reroute;
    if (o->disable) MOE_TRY(moe_route_policy_parse_experts(p, "--disable-experts", o->disable, is_moe, p->disabled));
    if (o->force) MOE_TRY(moe_route_policy_parse_experts(p, "--force-experts", o->force, is_moe, p->forced));
    if (o->layer_k && !strncmp(o->layer_k, "auto:", 5)) {
        char *end;
        double avg = strtod(o->layer_k + 5, &end);
        if (end == o->layer_k + 5 || *end || !isfinite(avg))
            return moe_fail(MOE_EUSAGE, "--layer-k: '%s' is not auto:K (K the average experts per token)", o->layer_k);
        MOE_TRY(check_number("--layer-k auto:", avg, 1, 0, p->n_experts));
        MOE_TRY(moe_lexi_layer_k(m, avg, p->k));
    } else if (o->layer_k) {
        MOE_TRY(moe_route_policy_parse_k(p, "--layer-k", o->layer_k, is_moe));
    }
    if (!moe_route_policy_active(p)) return MOE_OK;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (is_moe[l] && m->blocks[l].moe.router.ops->kind == MOE_ROUTE_SOFT)
            return moe_fail(MOE_EUSAGE, "routing options: layer %d's router (%s) mixes slots, it has no per-token "
                            "experts to choose", l, m->blocks[l].moe.router.ops->name);
    return MOE_OK;
}

moe_status moe_model_set_routing(moe_model *m, const moe_route_options *o) {
    moe_route_policy_free(m->policy);
    m->policy = NULL;
    if (!o || (!o->top_p && !o->layer_k && !o->skip_threshold && !o->capacity && !o->reroute && !o->disable && !o->force))
        return MOE_OK;
    int L = m->cfg.n_layers, E = 0;
    unsigned char *is_moe = calloc((size_t)(L > 0 ? L : 1), 1);
    if (!is_moe) return moe_fail(MOE_ENOMEM, "routing options: out of memory");
    for (int l = 0; l < L; l++)
        if (m->blocks[l].ffn_kind == MOE_FFN_MOE) {
            is_moe[l] = 1;
            E = m->blocks[l].moe.router.p.n_experts;
        }
    moe_route_policy *p = NULL;
    moe_status st = moe_route_policy_new(L, E, &p);
    if (st == MOE_OK) st = build(m, o, is_moe, p);
    free(is_moe);
    if (st == MOE_OK && moe_route_policy_active(p)) m->policy = p;
    else moe_route_policy_free(p);
    return st;
}

void moe_model_route_counts(const moe_model *m, uint64_t *layer_tokens, uint64_t *assignments) {
    *layer_tokens = __atomic_load_n(&m->route_counts[0], __ATOMIC_RELAXED);
    *assignments = __atomic_load_n(&m->route_counts[1], __ATOMIC_RELAXED);
}

void moe_model_route_counts_reset(moe_model *m) {
    __atomic_store_n(&m->route_counts[0], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->route_counts[1], 0, __ATOMIC_RELAXED);
}
