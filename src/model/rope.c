/* rope.c - see rope.h. Formulas follow transformers' modeling_rope_utils. */
#include "model/rope.h"
#include "core/alloc.h"
#include "core/error.h"
#include <limits.h>
#include <math.h>
#include <string.h>

static double yarn_correction_dim(double rot, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (rot * 2 * M_PI))) / (2 * log(base));
}

moe_status moe_rope_init(moe_rope *r, const moe_rope_config *c) {
    int half = c->dim / 2;
    r->dim = c->dim;
    r->layout = c->layout;
    r->attention_factor = (float)c->attention_factor;
    r->long_from = INT_MAX;
    r->long_attention_factor = r->attention_factor;
    r->inv_freq = moe_alloc(sizeof(float) * (size_t)half);
    if (!r->inv_freq) return moe_fail(MOE_ENOMEM, "rope: out of memory");
    float base = (float)c->theta;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->dim;
        r->inv_freq[i] = 1.0f / powf(base, e);
    }
    if (!strcmp(c->type, "longrope")) {
        for (int i = 0; i < half; i++) {
            float e = (float)(2 * i) / (float)c->dim;
            r->inv_freq[i] = 1.0f / (c->short_factor[i] * powf(base, e));
        }
        r->attention_factor = (float)c->short_mscale;
        r->long_attention_factor = (float)c->long_mscale;
        r->long_from = c->original_max_pos;   /* transformers: long once seq_len > original_max_pos */
    } else if (!strcmp(c->type, "linear")) {
        for (int i = 0; i < half; i++) r->inv_freq[i] /= (float)c->factor;
    } else if (!strcmp(c->type, "llama3")) {
        double old = c->original_max_pos, lo_wl = old / c->low_freq_factor, hi_wl = old / c->high_freq_factor;
        float f = (float)c->factor;
        for (int i = 0; i < half; i++) {
            float inv = r->inv_freq[i];
            float wl = (float)(2 * M_PI) / inv;
            float v = wl > (float)lo_wl ? inv / f : inv;
            if (!(wl < (float)hi_wl) && !(wl > (float)lo_wl) && c->high_freq_factor != c->low_freq_factor) {
                float smooth = ((float)old / wl - (float)c->low_freq_factor) /
                               (float)(c->high_freq_factor - c->low_freq_factor);
                v = (1 - smooth) * v / f + smooth * v;
            }
            r->inv_freq[i] = v;
        }
    } else if (!strcmp(c->type, "yarn")) {
        double base_d = c->theta;
        double lo = yarn_correction_dim(c->beta_fast, c->dim, base_d, c->original_max_pos);
        double hi = yarn_correction_dim(c->beta_slow, c->dim, base_d, c->original_max_pos);
        if (c->truncate) { lo = floor(lo); hi = ceil(hi); }
        if (lo < 0) lo = 0;
        if (hi > c->dim - 1) hi = c->dim - 1;
        if (lo == hi) hi += 0.001;
        float f = (float)c->factor;
        for (int i = 0; i < half; i++) {
            float e = (float)(2 * i) / (float)c->dim;
            float pos_freq = powf(base, e);
            float extrap = 1.0f / pos_freq, interp = 1.0f / (f * pos_freq);
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float ef = 1.0f - ramp;
            r->inv_freq[i] = interp * (1.0f - ef) + extrap * ef;
        }
    }
    return MOE_OK;
}

void moe_rope_free(moe_rope *r) {
    moe_free(r->inv_freq);
    r->inv_freq = NULL;
}

void moe_rope_cossin(const moe_rope *r, int pos, float *cs, float *sn) {
    float af = pos >= r->long_from ? r->long_attention_factor : r->attention_factor;
    for (int i = 0; i < r->dim / 2; i++) {
        float a = (float)pos * r->inv_freq[i];
        cs[i] = cosf(a) * af;
        sn[i] = sinf(a) * af;
    }
}

void moe_rope_rotate(const moe_rope *r, float *v, const float *cs, const float *sn) {
    int half = r->dim / 2;
    if (r->layout == MOE_ROPE_PAIRS_HALF) {
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cs[i] - b * sn[i];
            v[i + half] = b * cs[i] + a * sn[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = b * cs[i] + a * sn[i];
        }
    }
}
