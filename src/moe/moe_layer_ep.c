/* moe_layer_ep.c - one MoE layer's routed experts under expert parallelism (see ep.h): dispatch the
 * token rows to the experts' owners, run this rank's experts, send each output row back to its
 * token's owner, combine there, gather the finished rows on every rank.
 *
 * Every rank holds the same grouped decision, so every send list and every receive list is computed
 * locally on both sides from it: only rows travel, never indices. Tokens are owned in contiguous
 * blocks (rank q: [n q / R, n (q+1) / R)), so what a rank receives from ranks 0..R-1 arrives in
 * ascending token order, and the combine (moe_experts_combine) adds each token's rows in ascending
 * expert order as the single-process executor does: the bits do not depend on R or the placement. */
#include "core/error.h"
#include "moe/ep.h"
#include "moe/experts.h"
#include "moe/moe_layer.h"
#include <limits.h>
#include <string.h>

int moe_layer_owns(const moe_layer *L, int e) {
    return !L->ep || L->ep->owner[(size_t)L->layer * L->ep->n_experts + e] == L->ep->rank;
}

static double now(const moe_ep *ep) { return ep->clock ? ep->clock() : 0.0; }

/* Prefix sums of counts into displacements; the total, or -1 past INT_MAX floats. */
static long long displs(const int *count, int *displ, int R) {
    long long s = 0;
    for (int q = 0; q < R; q++) {
        displ[q] = (int)s;
        s += count[q];
        if (s > INT_MAX) return -1;
    }
    return s;
}

moe_status moe_layer_ep_experts(const moe_layer *L, const float *x, int n, const moe_assign *a, const float *logits,
                                float *out, moe_arena *scratch) {
    moe_ep *ep = L->ep;
    int R = ep->size, me = ep->rank, E = a->n_experts, d = L->d_model, rows = a->rows;
    if (a->dispatch) return moe_fail(MOE_EINTERNAL, "MoE layer %d: Soft MoE has no expert-parallel form", L->layer);
    if (L->weight_on_input)   /* moe_experts_combine scales outputs by the weight */
        return moe_fail(MOE_EUSAGE, "MoE layer %d: experts weighted on their input (Llama 4) have no expert-parallel form yet", L->layer);
    if ((long long)n * d > INT_MAX || (long long)rows * d > INT_MAX)
        return moe_fail(MOE_EUSAGE, "MoE layer %d: %d tokens are too many for one expert-parallel exchange", L->layer, n);
    const int *owner = ep->owner + (size_t)L->layer * ep->n_experts;
    moe_arena_mark mark = moe_arena_push(scratch);
    int *first = moe_arena_alloc(scratch, sizeof(int) * (size_t)(R + 1));
    int *cnt = moe_arena_alloc(scratch, sizeof(int) * 4 * (size_t)R), *dsp = moe_arena_alloc(scratch, sizeof(int) * 4 * (size_t)R);
    int *at = moe_arena_alloc(scratch, sizeof(int) * (size_t)R);   /* write cursors per rank */
    int *towner = moe_arena_alloc(scratch, sizeof(int) * (size_t)n), *x_row = moe_arena_alloc(scratch, sizeof(int) * (size_t)n);
    int *row_e = moe_arena_alloc(scratch, sizeof(int) * (size_t)(rows > 0 ? rows : 1));
    int *ypos = moe_arena_alloc(scratch, sizeof(int) * (size_t)(rows > 0 ? rows : 1));
    unsigned char *need = moe_arena_alloc(scratch, (size_t)R * n), *run = moe_arena_alloc(scratch, (size_t)(E > 0 ? E : 1));
    if (!first || !at || !cnt || !dsp || !towner || !x_row || !row_e || !ypos || !need || !run) {
        moe_arena_pop(scratch, mark);
        return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for the expert-parallel exchange", L->layer);
    }
    int *scount = cnt, *rcount = cnt + R, *ccount = cnt + 2 * R, *crcount = cnt + 3 * R;
    int *sdispl = dsp, *rdispl = dsp + R, *cdispl = dsp + 2 * R, *crdispl = dsp + 3 * R;
    for (int q = 0; q <= R; q++) first[q] = (int)((long long)n * q / R);
    for (int q = 0; q < R; q++)
        for (int t = first[q]; t < first[q + 1]; t++) towner[t] = q;
    for (int e = 0; e < E; e++) {
        run[e] = owner[e] == me;
        for (int p = a->offset[e]; p < a->offset[e + 1]; p++) row_e[p] = e;
    }
    /* need[q][t]: token t has an expert on rank q, so its row goes there once */
    memset(need, 0, (size_t)R * n);
    for (int p = 0; p < rows; p++) need[(size_t)owner[row_e[p]] * n + a->row_tok[p]] = 1;
    int t0 = first[me], t1 = first[me + 1];
    for (int q = 0; q < R; q++) {
        int s = 0, r = 0;
        for (int t = t0; t < t1; t++) s += need[(size_t)q * n + t];
        for (int t = first[q]; t < first[q + 1]; t++) r += need[(size_t)me * n + t];
        scount[q] = s * d;
        rcount[q] = r * d;
    }
    /* combine lists: my experts' rows go to their tokens' owners; my tokens' rows come from their experts' owners */
    for (int q = 0; q < R; q++) ccount[q] = crcount[q] = 0;
    for (int p = 0; p < rows; p++) {
        int eo = owner[row_e[p]], to = towner[a->row_tok[p]];
        if (eo == me) ccount[to] += d;
        if (to == me) crcount[eo] += d;
    }
    long long n_send = displs(scount, sdispl, R), n_recv = displs(rcount, rdispl, R);
    long long n_csend = displs(ccount, cdispl, R), n_crecv = displs(crcount, crdispl, R);
    moe_status st = MOE_OK;
    float *sbuf = NULL, *rbuf = NULL, *Y = NULL, *csbuf = NULL, *crbuf = NULL;
    if (n_send < 0 || n_recv < 0 || n_csend < 0 || n_crecv < 0)
        st = moe_fail(MOE_EUSAGE, "MoE layer %d: %d tokens are too many for one expert-parallel exchange", L->layer, n);
    if (st == MOE_OK) {
        sbuf = moe_arena_alloc(scratch, sizeof(float) * (size_t)(n_send > 0 ? n_send : 1));
        rbuf = moe_arena_alloc(scratch, sizeof(float) * (size_t)(n_recv > 0 ? n_recv : 1));
        Y = moe_arena_alloc(scratch, sizeof(float) * (size_t)(rows > 0 ? rows : 1) * d);
        csbuf = moe_arena_alloc(scratch, sizeof(float) * (size_t)(n_csend > 0 ? n_csend : 1));
        crbuf = moe_arena_alloc(scratch, sizeof(float) * (size_t)(n_crecv > 0 ? n_crecv : 1));
        if (!sbuf || !rbuf || !Y || !csbuf || !crbuf)
            st = moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for the expert-parallel exchange", L->layer);
    }
    double c0 = now(ep), c1 = c0, c2 = c0, c3 = c0, c4 = c0;
    if (st == MOE_OK) {   /* 1. dispatch */
        float *w = sbuf;
        for (int q = 0; q < R; q++)
            for (int t = t0; t < t1; t++)
                if (need[(size_t)q * n + t]) { memcpy(w, x + (size_t)t * d, sizeof(float) * (size_t)d); w += d; }
        st = ep->alltoallv(ep->comm, sbuf, scount, sdispl, rbuf, rcount, rdispl);
        int k = 0;
        for (int t = 0; t < n; t++) x_row[t] = need[(size_t)me * n + t] ? k++ : -1;
        c1 = now(ep);
    }
    if (st == MOE_OK) {   /* 2. this rank's experts on the rows received */
        moe_experts_call c = {rbuf, n, a, logits, 0, E, x_row, Y, run};
        st = moe_experts_forward(L, &c, NULL, scratch);
        c2 = now(ep);
    }
    if (st == MOE_OK) {   /* 3. output rows back to their tokens' owners, combined there */
        for (int q = 0; q < R; q++) at[q] = cdispl[q];
        for (int p = 0; p < rows; p++)
            if (owner[row_e[p]] == me) {
                int q = towner[a->row_tok[p]];
                memcpy(csbuf + at[q], Y + (size_t)p * d, sizeof(float) * (size_t)d);
                at[q] += d;
            }
        st = ep->alltoallv(ep->comm, csbuf, ccount, cdispl, crbuf, crcount, crdispl);
        for (int q = 0; q < R; q++) at[q] = crdispl[q] / d;
        for (int p = 0; p < rows; p++) ypos[p] = towner[a->row_tok[p]] == me ? at[owner[row_e[p]]]++ : -1;
        c3 = now(ep);
        if (st == MOE_OK) moe_experts_combine(a, crbuf, ypos, t0, t1, d, out);
    }
    if (st == MOE_OK) {   /* 4. every rank gets every token's row */
        for (int q = 0; q < R; q++) {
            rcount[q] = (first[q + 1] - first[q]) * d;
            rdispl[q] = first[q] * d;
        }
        st = ep->allgatherv(ep->comm, out, rcount, rdispl);
        c4 = now(ep);
    }
    if (st == MOE_OK) {
        moe_ep_stats *s = &ep->stats;
        uint64_t disp = 0, comb = 0, run_rows = 0;
        for (int q = 0; q < R; q++)
            if (q != me) {
                disp += (uint64_t)scount[q] * 4;
                comb += (uint64_t)ccount[q] * 4;
            }
        for (int p = 0; p < rows; p++) run_rows += owner[row_e[p]] == me;
        s->calls++;
        s->tokens += (uint64_t)n;
        s->dispatch_bytes += disp;
        s->combine_bytes += comb;
        s->gather_bytes += (uint64_t)(t1 - t0) * d * 4 * (uint64_t)(R - 1);
        s->rows_run += run_rows;
        s->t_dispatch += c1 - c0;
        s->t_experts += c2 - c1;
        s->t_combine += c3 - c2;
        s->t_gather += c4 - c3;
    }
    moe_arena_pop(scratch, mark);
    return st;
}
