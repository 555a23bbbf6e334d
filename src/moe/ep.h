/* ep.h - expert parallelism: the experts of every MoE layer are placed on R ranks (processes), each
 * rank keeps only its own experts' weights, and everything else (attention, norms, routers, shared
 * experts) is replicated. Every rank runs the same forward pass on the same tokens, so the routers
 * give every rank the same decision; in each MoE layer (moe_layer_ep_experts):
 *   1. each rank owns a contiguous block of the n tokens and sends each token's hidden row once to
 *      every rank owning one of its experts (all-to-all "dispatch");
 *   2. each rank runs its experts on the rows it received, in the grouped order of the single-process
 *      executor (same rows, same kernels, same bits);
 *   3. each expert output row goes back to its token's owner (all-to-all "combine"), which adds them
 *      in ascending expert order, exactly as the single-process combine does;
 *   4. the owners' finished rows are gathered on every rank (all-gather), since the replicated
 *      attention of the next layer needs every row everywhere.
 * The result is bit-identical to one process. The transport is not part of the library: the launcher
 * (the moe command's MPI glue, src/cli/ep_mpi.c) supplies the two collectives below, so libmoe does
 * not depend on MPI. Counts are in floats. */
#ifndef MOE_MOE_EP_H
#define MOE_MOE_EP_H
#include "moe.h"
#include <stdint.h>

typedef struct moe_ep_stats {
    uint64_t calls;              /* MoE layer calls */
    uint64_t tokens;             /* tokens over those calls (a token counts once per layer) */
    uint64_t dispatch_bytes;     /* bytes this rank sent to other ranks: hidden rows out */
    uint64_t combine_bytes;      /* ... expert output rows back to their tokens' owners */
    uint64_t gather_bytes;       /* ... finished rows of its own tokens to every other rank */
    uint64_t rows_run;           /* expert rows (token, expert) this rank computed */
    double t_dispatch, t_experts, t_combine, t_gather;   /* seconds in each step (communication includes
                                                           waiting for the slowest rank) */
} moe_ep_stats;

typedef struct moe_ep {
    int rank, size;
    int n_layers, n_experts;
    int *owner;                  /* [n_layers][n_experts] rank of each router slot's expert */
    void *comm;                  /* the transport's handle */
    /* send[sdispl[q] .. + scount[q]) to rank q, receive rank q's part into recv[rdispl[q] ..) */
    moe_status (*alltoallv)(void *comm, const float *send, const int *scount, const int *sdispl, float *recv,
                            const int *rcount, const int *rdispl);
    /* in place: rank q's rows are buf[displ[q] .. + count[q]); every rank ends with all of them */
    moe_status (*allgatherv)(void *comm, float *buf, const int *count, const int *displ);
    double (*clock)(void);       /* seconds, for the time split; may be NULL */
    moe_ep_stats stats;
} moe_ep;

/* Round robin placement: expert e of every layer on rank e mod R. */
void moe_ep_place_round_robin(int n_layers, int n_experts, int size, int *owner);

/* Balanced placement from a load per (layer, expert) (e.g. the token counts of a routing trace):
 * per layer, experts by decreasing load go to the least loaded rank that still has room (at most
 * ceil(E / R) experts per rank, so memory stays balanced too). Ties go to the lower expert / rank. */
void moe_ep_place_balanced(int n_layers, int n_experts, int size, const uint64_t *load, int *owner);
#endif
