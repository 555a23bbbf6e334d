/* rope.h - rotary position embeddings: inverse frequencies for the default, linear, llama3, YaRN and
 * LongRoPE (phimoe's: short factors only) variants (computed in float32 as transformers does), and the rotation of pairs of coordinates.
 * Pairs are (i, i + dim/2) for the usual layout and (2i, 2i+1) for interleaved checkpoints. */
#ifndef MOE_MODEL_ROPE_H
#define MOE_MODEL_ROPE_H
#include "model/config.h"

typedef struct moe_rope {
    int dim;
    moe_rope_layout layout;
    float attention_factor;
    /* longrope: positions from long_from on use long_attention_factor. transformers picks one factor per
     * forward call from its longest position, so a call that crosses long_from rescales its earlier
     * positions as well; a KV cache keeps them as they were (equal whenever the two factors are) */
    int long_from;
    float long_attention_factor;
    float *inv_freq;   /* [dim/2] */
} moe_rope;

moe_status moe_rope_init(moe_rope *r, const moe_rope_config *c);
void moe_rope_free(moe_rope *r);
/* cos/sin [dim/2] for one position (already multiplied by the attention factor). */
void moe_rope_cossin(const moe_rope *r, int pos, float *cos_out, float *sin_out);
/* Rotate v[0..dim) in place. */
void moe_rope_rotate(const moe_rope *r, float *v, const float *cs, const float *sn);
#endif
