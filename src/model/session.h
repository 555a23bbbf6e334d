/* session.h - a session's private state, shared by session.c (creation, one sequence's eval) and
 * forward.c (the forward pass over the new tokens of one or several sessions in one step). */
#ifndef MOE_MODEL_SESSION_H
#define MOE_MODEL_SESSION_H
#include "core/arena.h"
#include "model/attention.h"
#include "moe.h"

struct moe_session {
    moe_model *m;
    int max_ctx, pos;
    int state_lost;   /* a failed evaluation advanced the recurrent state of linear-attention layers past pos */
    moe_kv_layer *kv;
    moe_route_hook hook;
    void *hook_user;
    moe_hidden_hook hidden;
    void *hidden_user;
    moe_arena scratch;
    moe_timing timing;
};

/* One session's part of a forward step: n tokens appended at positions s->pos..; logits rows
 * [first_row, n) go to logits (row first_row first) if logits is non-NULL. */
typedef struct moe_step_seq {
    moe_session *s;
    const int32_t *tokens;
    int n;
    float *logits;
    int first_row;
} moe_step_seq;

/* One forward step over distinct sessions of one model (validated by the caller; the sum of n must
 * be positive). The token-wise work (norms, projections, FFN and MoE layers, head) runs over all
 * sessions' rows at once and attention runs per session on its own cache. Scratch comes from the
 * largest arena among the sessions. Positions are not advanced (the caller does so when every step
 * succeeded). */
moe_status moe_forward_step(const moe_step_seq *seqs, int n_seqs);
#endif
