/* ep.h - the moe command under mpirun: expert parallelism (moe/ep.h) over MPI when moe was built with
 * it (CMake found MPI: MOE_HAVE_MPI), and a clear refusal when it was not. One rank per process;
 * only rank 0 writes to standard output. */
#ifndef MOE_CLI_EP_H
#define MOE_CLI_EP_H
#include <stdio.h>
#include "moe.h"

/* At the start of main: join the MPI job if launched by mpirun (MPI_Init). Returns 0, or an exit code
 * after printing why the command cannot run (launched by mpirun -np > 1 without MPI support). */
int moe_cli_ep_init(int *argc, char ***argv);
/* Ranks in the job (1 without mpirun) and this process's rank. */
int moe_cli_ep_size(void);
int moe_cli_ep_rank(void);
/* Whether this moe was built with MPI. */
int moe_cli_ep_built(void);
/* After loading: place the experts (round robin, or balanced by the expert loads of the routing trace
 * in placement, a `moe trace` folder or trace.bin) and keep only this rank's. Nothing with one rank. */
moe_status moe_cli_ep_attach(moe_model *m, const char *placement);
/* The exchange's counters of this rank since the last report, as a readable line and a
 * "stats-ep-json {...}" line (--stats); then zeroes them. */
void moe_cli_ep_print_stats(FILE *f, const char *phase);
/* At the end of main with the exit code: MPI_Finalize, or MPI_Abort on a failure so that no other rank
 * is left waiting in a collective. */
int moe_cli_ep_finish(int rc);
#endif
