/* bench_tgemm.c - the training product (moe_tgemm, src/train/tgemm.h) against the inference engine's
 * moe_matmul (src/core/matmul.h) on the shapes a training step of the tiny and small presets runs:
 * forward y = x W^T, input gradient dx = dy W, weight gradient dW = dy^T x. Both are timed in the same
 * run on the same data, single-threaded and with all threads; moe_matmul computes x W^T only, so for
 * the two backward shapes it gets the operands pre-transposed (its best case). Prints GFLOP/s and the
 * ratio. Usage: bench_tgemm [seconds per case] */
#include "core/matmul.h"
#include "moe.h"
#include "train/tgemm.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct shape { const char *what; int M, N, K; } shape;

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    static const shape shapes[] = {
        {"tiny  fwd  x W^T  (2048x128 . 128x384)", 2048, 384, 128},
        {"tiny  dW   dy^T x (384x2048 . 2048x128)", 384, 128, 2048},
        {"tiny  expert fwd  (512x128 . 128x128)", 512, 128, 128},
        {"small fwd  x W^T  (4096x256 . 256x768)", 4096, 768, 256},
        {"small expert dW   (256x512 . 512x256)", 256, 256, 512},
    };
    int threads[2] = {1, omp_get_max_threads()};
    printf("%-44s %7s %10s %10s %7s\n", "shape", "threads", "tgemm", "matmul", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        float *A = malloc(sizeof(float) * (size_t)M * K), *B = malloc(sizeof(float) * (size_t)K * N);
        float *BT = malloc(sizeof(float) * (size_t)K * N), *C = malloc(sizeof(float) * (size_t)M * N);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5);
        for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)((i * 104729 % 1000) / 1000.0 - 0.5);
        moe_transpose(BT, B, K, N);   /* [N][K]: the nn.Linear layout moe_matmul wants */
        for (int ti = 0; ti < 2; ti++) {
            moe_set_threads(threads[ti]);
            double rate[2];
            for (int which = 0; which < 2; which++) {
                int reps = 0;
                double t0 = now(), t;
                do {
                    if (which == 0) moe_tgemm(C, (size_t)N, A, (size_t)K, B, (size_t)N, M, N, K, 0);
                    else moe_matmul(C, A, M, MOE_F32, BT, N, K);
                    reps++;
                } while ((t = now() - t0) < secs);
                rate[which] = 2.0 * M * N * K * reps / t / 1e9;
            }
            printf("%-44s %7d %8.1f G %8.1f G %6.2fx\n", shapes[s].what, threads[ti], rate[0], rate[1], rate[0] / rate[1]);
        }
        free(A); free(B); free(BT); free(C);
    }
    return 0;
}
