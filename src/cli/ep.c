/* ep.c - the MPI transport of expert parallelism (see ep.h and moe/ep.h).
 *
 * Failure handling: a rank that fails returns an exit code like any command; moe_cli_ep_finish then
 * calls MPI_Abort, which makes mpirun end every rank (the others may be waiting in a collective that
 * would never complete). A rank that dies without a word (kill -9, out of memory) is seen by mpirun,
 * which ends the job's other processes with SIGTERM; each of them then prints one line saying why
 * before it exits. MPI's own errors are fatal (MPI_ERRORS_ARE_FATAL, the default handler). */
#include "cli/ep.h"
#include "core/error.h"
#include "model/ep_model.h"
#include "tools/trace.h"
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef MOE_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank, g_size = 1;
static moe_ep g_ep;

int moe_cli_ep_size(void) { return g_size; }
int moe_cli_ep_rank(void) { return g_rank; }
int moe_cli_ep_built(void) {
#ifdef MOE_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

/* The size of the job mpirun (OpenMPI, or a PMI launcher) started this process in, or 1. */
static int launcher_size(void) {
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

#ifdef MOE_HAVE_MPI
static int g_mpi;   /* MPI_Init was called */

static double clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
#endif

#ifdef MOE_HAVE_MPI
static char g_term_msg[160];
static void on_term(int sig) {
    ssize_t r = write(2, g_term_msg, strlen(g_term_msg));
    (void)r;
    _exit(128 + sig);
}

static moe_status mpi_alltoallv(void *comm, const float *send, const int *scount, const int *sdispl, float *recv,
                                const int *rcount, const int *rdispl) {
    int rc = MPI_Alltoallv(send, scount, sdispl, MPI_FLOAT, recv, rcount, rdispl, MPI_FLOAT, *(MPI_Comm *)comm);
    return rc == MPI_SUCCESS ? MOE_OK : moe_fail(MOE_EIO, "expert parallelism: MPI_Alltoallv failed (%d)", rc);
}

static moe_status mpi_allgatherv(void *comm, float *buf, const int *count, const int *displ) {
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, count, displ, MPI_FLOAT, *(MPI_Comm *)comm);
    return rc == MPI_SUCCESS ? MOE_OK : moe_fail(MOE_EIO, "expert parallelism: MPI_Allgatherv failed (%d)", rc);
}
static MPI_Comm g_comm;
#endif

int moe_cli_ep_init(int *argc, char ***argv) {
    int want = launcher_size();
#ifdef MOE_HAVE_MPI
    if (want <= 1 && !getenv("OMPI_COMM_WORLD_RANK")) return 0;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "moe: MPI_Init failed\n");
        return 3;
    }
    g_mpi = 1;
    MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
    MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    if (g_size > 1) {
        snprintf(g_term_msg, sizeof g_term_msg,
                 "moe: rank %d of %d: ended by mpirun (another rank failed or was killed)\n", g_rank, g_size);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        if (g_rank != 0) {   /* only rank 0 prints results; every rank keeps stderr for its errors */
            int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (fd >= 0) { fflush(stdout); dup2(fd, 1); close(fd); }
        }
    }
    return 0;
#else
    (void)argc; (void)argv;
    if (want > 1) {
        fprintf(stderr, "moe: started by mpirun with %d ranks, but this moe was built without MPI "
                        "(install libopenmpi-dev and rebuild for expert parallelism)\n", want);
        return 1;
    }
    return 0;
#endif
}

#ifdef MOE_HAVE_MPI
/* Expert loads per (layer, expert) from a routing trace: the tokens routed to each. */
static moe_status trace_loads(const char *placement, const moe_model_info *info, int n_layers, uint64_t *load) {
    char path[4096];
    struct stat sb;
    if (stat(placement, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(path, sizeof path, "%s/trace.bin", placement);
    else snprintf(path, sizeof path, "%s", placement);
    moe_trace t;
    MOE_TRY(moe_trace_read(path, &t));
    moe_status st = MOE_OK;
    if ((int)t.n_layers != n_layers || (int)t.n_experts != info->n_experts)
        st = moe_fail(MOE_EINPUT, "%s: a trace of %u layers x %u experts, the model has %d x %d", path, t.n_layers,
                      t.n_experts, n_layers, info->n_experts);
    for (uint64_t i = 0; st == MOE_OK && i < t.n_tokens; i++)
        for (uint32_t j = 0; j < t.n_moe; j++)
            for (uint32_t s = 0; s < t.k; s++) {
                uint16_t e = t.expert[(i * t.n_moe + j) * t.k + s];
                if (e != MOE_TRACE_NO_EXPERT) load[(size_t)t.layer[j] * t.n_experts + e]++;
            }
    moe_trace_free(&t);
    return st;
}
#endif

moe_status moe_cli_ep_attach(moe_model *m, const char *placement) {
    if (g_size <= 1) {
        if (placement) return moe_fail(MOE_EUSAGE, "--ep-placement needs several ranks (mpirun -np R moe ...)");
        return MOE_OK;
    }
#ifdef MOE_HAVE_MPI
    const moe_model_info *info = moe_model_get_info(m);
    int L = info->n_layers, E = info->n_experts;
    if (E <= 0) return moe_fail(MOE_EUSAGE, "expert parallelism: the model has no routed experts to place");
    g_ep.owner = malloc(sizeof(int) * (size_t)L * E);
    uint64_t *load = placement ? calloc((size_t)L * E, sizeof *load) : NULL;
    if (!g_ep.owner || (placement && !load)) { free(load); return moe_fail(MOE_ENOMEM, "out of memory"); }
    if (placement) {
        moe_status st = trace_loads(placement, info, L, load);
        if (st != MOE_OK) { free(load); return st; }
        moe_ep_place_balanced(L, E, g_size, load, g_ep.owner);
        free(load);
    } else {
        moe_ep_place_round_robin(L, E, g_size, g_ep.owner);
    }
    g_ep.rank = g_rank;
    g_ep.size = g_size;
    g_ep.n_layers = L;
    g_ep.n_experts = E;
    g_ep.comm = &g_comm;
    g_ep.alltoallv = mpi_alltoallv;
    g_ep.allgatherv = mpi_allgatherv;
    g_ep.clock = clock_s;
    return moe_model_ep_attach(m, &g_ep);
#else
    return moe_fail(MOE_EINTERNAL, "expert parallelism without MPI");
#endif
}

void moe_cli_ep_print_stats(FILE *f, const char *phase) {
    if (g_size <= 1 || !g_ep.owner) return;
    const moe_ep_stats *s = &g_ep.stats;
    double tok = s->tokens ? (double)s->tokens : 1;
    fprintf(f, "stats %s: ep rank %d/%d: %llu layer calls, %llu token-layers, %llu expert rows run; sent per token and "
               "layer: dispatch %.1f B, combine %.1f B, gather %.1f B; time: dispatch %.3f s, experts %.3f s, "
               "combine %.3f s, gather %.3f s\n", phase, g_rank, g_size, (unsigned long long)s->calls,
            (unsigned long long)s->tokens, (unsigned long long)s->rows_run, s->dispatch_bytes / tok,
            s->combine_bytes / tok, s->gather_bytes / tok, s->t_dispatch, s->t_experts, s->t_combine, s->t_gather);
    fprintf(f, "stats-ep-json {\"phase\": \"%s\", \"rank\": %d, \"size\": %d, \"calls\": %llu, \"tokens\": %llu, \"rows_run\": %llu, "
               "\"dispatch_bytes\": %llu, \"combine_bytes\": %llu, \"gather_bytes\": %llu, \"t_dispatch\": %.6f, "
               "\"t_experts\": %.6f, \"t_combine\": %.6f, \"t_gather\": %.6f}\n", phase, g_rank, g_size,
            (unsigned long long)s->calls, (unsigned long long)s->tokens, (unsigned long long)s->rows_run,
            (unsigned long long)s->dispatch_bytes, (unsigned long long)s->combine_bytes,
            (unsigned long long)s->gather_bytes, s->t_dispatch, s->t_experts, s->t_combine, s->t_gather);
    fflush(f);
    memset(&g_ep.stats, 0, sizeof g_ep.stats);   /* each report covers the phase since the last one */
}

int moe_cli_ep_finish(int rc) {
#ifdef MOE_HAVE_MPI
    if (g_mpi) {
        fflush(stdout);
        fflush(stderr);
        if (rc != 0 && g_size > 1) MPI_Abort(MPI_COMM_WORLD, rc);   /* no rank may wait for this one forever */
        MPI_Finalize();
    }
#endif
    free(g_ep.owner);
    g_ep.owner = NULL;
    return rc;
}
