/* tparams.h - the parameters of a training model: one flat f32 buffer each for the values, the
 * gradients and the two AdamW moments, cut into named tensors whose names and shapes are those of
 * the checkpoint layout (qwen3_moe, mixtral or dots1), so that saving is a walk over the table.
 * Experts of a layer are contiguous ([E][rows][cols] per matrix kind) so the training code can index
 * them as one array. Non-learned buffers (DeepSeek's score bias) live in the same table with
 * trainable = 0: the optimiser skips them, checkpoints and resume carry them. */
#ifndef MOE_TRAIN_TPARAMS_H
#define MOE_TRAIN_TPARAMS_H
#include "train/tconfig.h"
#include <stddef.h>

enum { MOE_INIT_NORMAL, MOE_INIT_ONES, MOE_INIT_ZEROS };

typedef struct moe_tparam {
    char name[96];
    int ndim;
    int64_t shape[2];
    size_t offset, numel;     /* in floats, into the flat buffers */
    int init;                 /* MOE_INIT_* */
    float std;
    int trainable, decay;     /* decay: AdamW weight decay applies (matrices, not norms) */
} moe_tparam;

/* Pointers of one layer into one flat buffer (values or gradients). NULL where absent. */
typedef struct moe_tlayer {
    float *attn_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ffn_norm;
    float *w1, *w3, *w2;      /* dense FFN: [d_ff][d], [d_ff][d], [d][d_ff] */
    float *gate;              /* router [n_logits][d] */
    float *bias;              /* DeepSeek score bias [E] (not learned) */
    float *ew1, *ew3, *ew2;   /* experts: [E][de][d] (aoe: [E][de][rank]), [E][de][d], [E][d][de] */
    float *sw1, *sw3, *sw2;   /* shared experts fused: [ds][d], [ds][d], [d][ds] */
} moe_tlayer;

typedef struct moe_tview {
    float *embed, *final_norm, *lm_head;
    moe_tlayer *layer;        /* [n_layers] */
} moe_tview;

typedef struct moe_tparams {
    moe_tconfig cfg;
    int n;                    /* tensors */
    moe_tparam *t;
    size_t total;             /* floats */
    size_t n_trainable;       /* floats that the optimiser updates */
    int n_logits;             /* rows of each router gate */
    float *val, *grad, *m, *v;
    moe_tview P, G;           /* views into val and grad */
} moe_tparams;

/* Build the table for a finished config and allocate the buffers (values zero, not initialised). */
moe_status moe_tparams_new(const moe_tconfig *c, moe_tparams **out);
void moe_tparams_free(moe_tparams *p);
/* Initialise the values from a seed: normal(0, std) matrices (output projections scaled by
 * 1/sqrt(2 layers)), ones for norms, zeros for buffers. */
void moe_tparams_init(moe_tparams *p, uint64_t seed);
const moe_tparam *moe_tparams_find(const moe_tparams *p, const char *name);
/* Names used by the layout for the MoE block and the expert matrices. */
void moe_tparams_names(const moe_tconfig *c, const char **block, const char **g, const char **u, const char **d);
#endif
