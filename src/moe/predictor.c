/* predictor.c - inputs of the cross-layer guesses and the validation of predictor files (predictor.h). */
#include "moe/predictor.h"
#include "core/error.h"
#include "core/matmul.h"
#include "core/ops.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void moe_predictor_input(moe_guess g, const float *x, int n, int d, const float *g_prev, const float *g_next, float eps,
                         float *out) {
    if (g == MOE_GUESS_LATE) {
        moe_rmsnorm(out, x, g_next, n, d, eps);
        return;
    }
    for (int t = 0; t < n; t++)
        for (int j = 0; j < d; j++) {
            float gp = g_prev[j];
            out[(size_t)t * d + j] = gp != 0.0f ? x[(size_t)t * d + j] * (g_next[j] / gp) : 0.0f;
        }
}

void moe_predictor_logits(const float *x, int n, int d, const float *w, const float *b, int E, float *logits) {
    moe_matmul(logits, x, n, MOE_F32, w, E, d);
    for (int t = 0; t < n; t++)
        for (int e = 0; e < E; e++) logits[(size_t)t * E + e] += b[e];
}

static const char *const k_guess[2] = {"early", "late"};

/* "layers.N.GUESS.weight|bias" with N in canonical decimal: layer, guess and kind (0 weight, 1 bias), or -1 */
static int parse_name(const char *name, int *layer, int *guess, int *kind) {
    int l = 0, nd = 0;
    if (strncmp(name, "layers.", 7)) return -1;
    const char *p = name + 7;
    for (; *p >= '0' && *p <= '9' && nd < 7; p++, nd++) l = l * 10 + (*p - '0');
    if (!nd || (nd > 1 && name[7] == '0') || *p != '.') return -1;
    p++;
    for (int g = 0; g < 2; g++) {
        size_t gl = strlen(k_guess[g]);
        if (strncmp(p, k_guess[g], gl) || p[gl] != '.') continue;
        if (!strcmp(p + gl + 1, "weight")) { *layer = l; *guess = g; *kind = 0; return 0; }
        if (!strcmp(p + gl + 1, "bias")) { *layer = l; *guess = g; *kind = 1; return 0; }
    }
    return -1;
}

moe_status moe_predictor_bind(const moe_st_file *f, int n_layers, const unsigned char *is_moe, int n_experts, int d_model,
                              const float **w, const float **b) {
    for (int i = 0; i < 2 * n_layers; i++) w[i] = b[i] = NULL;
    for (int i = 0; i < f->n; i++) {
        const moe_tensor *t = &f->tensors[i];
        int l, g, kind;
        if (parse_name(f->names[i], &l, &g, &kind))
            return moe_fail(MOE_EINPUT, "%s: unexpected tensor \"%.80s\" in a predictor file (expected "
                            "layers.N.early|late.weight|bias)", f->path, f->names[i]);
        int prev = -1;
        for (int p = 0; p < l && p < n_layers; p++)
            if (is_moe[p]) prev = p;
        if (l >= n_layers || !is_moe[l] || prev < 0)
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\": layer %d of this model is not a MoE layer that follows "
                            "another MoE layer (the predictor was fitted for a different model?)", f->path, f->names[i], l);
        if (t->dtype != MOE_F32)
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" is %s, expected F32", f->path, f->names[i], moe_dtype_name(t->dtype));
        int ok = kind ? t->ndim == 1 && t->shape[0] == n_experts
                      : t->ndim == 2 && t->shape[0] == n_experts && t->shape[1] == d_model;
        if (!ok && kind)
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" should have shape [%d] for this model (fitted for a different "
                            "model?)", f->path, f->names[i], n_experts);
        if (!ok)
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" should have shape [%d, %d] for this model (fitted for a "
                            "different model?)", f->path, f->names[i], n_experts, d_model);
        if ((uintptr_t)t->data % sizeof(float))
            return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" is not 4-byte aligned in the file", f->path, f->names[i]);
        const float **slot = kind ? &b[2 * l + g] : &w[2 * l + g];
        if (*slot) return moe_fail(MOE_EINPUT, "%s: tensor \"%s\" appears twice", f->path, f->names[i]);
        *slot = t->data;
    }
    int prev = -1;
    for (int l = 0; l < n_layers; l++) {
        if (!is_moe[l]) continue;
        for (int g = 0; prev >= 0 && g < 2; g++)
            if (!w[2 * l + g] || !b[2 * l + g])
                return moe_fail(MOE_EINPUT, "%s: missing tensor \"layers.%d.%s.%s\" (a predictor covers every MoE layer "
                                "after the first; fitted for a different model?)", f->path, l, k_guess[g], w[2 * l + g] ? "bias" : "weight");
        prev = l;
    }
    return MOE_OK;
}
