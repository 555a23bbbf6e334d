/* sampler.h - choosing the next token from logits: greedy, or temperature sampling restricted by
 * top-k, top-p (nucleus) and min-p, in the order llama.cpp and transformers apply them
 * (top-k -> top-p -> min-p on the temperature-scaled distribution). The random generator is a
 * seeded xoshiro256** so a seed reproduces a generation exactly.
 *
 * A model may have more rows than its tokenizer has tokens (Qwen pads 151665 tokens to 151936
 * rows; training with --vocab above the tokenizer's): those ids have no text, so a sampler can be
 * told which ids exist, and it then never returns another one, greedy or not. */
#ifndef MOE_MODEL_SAMPLER_H
#define MOE_MODEL_SAMPLER_H
#include <stdint.h>
#include "moe.h"

typedef struct moe_sampler_params {
    double temperature;  /* <= 0: greedy */
    int top_k;           /* <= 0: off */
    double top_p;        /* >= 1: off */
    double min_p;        /* <= 0: off; keep tokens with p >= min_p * p_max */
    uint64_t seed;
} moe_sampler_params;

typedef struct moe_sampler {
    moe_sampler_params p;
    uint64_t s[4];
    int vocab;
    int *idx;            /* [vocab] scratch */
    float *prob;         /* [vocab] scratch */
    int *allowed;        /* [n_allowed] the ids that may be returned, ascending; NULL: all */
    int n_allowed;
} moe_sampler;

int moe_sampler_init(moe_sampler *s, const moe_sampler_params *p, int vocab);   /* 0 ok, -1 no memory */
void moe_sampler_free(moe_sampler *s);
/* Only ids with ok[id] != 0 may be returned (ok has vocab entries). 0 ok; -1 if none is allowed or
 * out of memory. */
int moe_sampler_restrict(moe_sampler *s, const unsigned char *ok);
/* Only ids the tokenizer has a token for (ids past its vocabulary, and holes in it, have no text). */
int moe_sampler_restrict_to_tokenizer(moe_sampler *s, const moe_tokenizer *t);
/* The next token for one row of logits (not modified). */
int moe_sampler_next(moe_sampler *s, const float *logits);
/* Uniform double in [0, 1) from the sampler's generator. */
double moe_sampler_uniform(moe_sampler *s);
#endif
