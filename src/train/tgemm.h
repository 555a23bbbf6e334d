/* tgemm.h - the dense products of training. Every linear layer's forward and backward reduces to one
 * row-major product C = A . B (with C accumulated or overwritten), after transposing whichever
 * operand is stored the other way round:
 *   forward   y[n][out]  = x[n][in] . W^T      (W^T packed once per call: out*in copies, n*out*in FMAs)
 *   input     dx[n][in] += dy[n][out] . W      (W used as stored)
 *   weight    dW[out][in] += dy^T . x          (dy^T read in place through strides)
 * One kernel then serves all three. Results never depend on the thread count: every element of C is
 * summed by one thread in a fixed order (k blocks ascending, k ascending inside a block), which is
 * what makes --resume bit-identical on any -t. The plain-loop version is the test oracle. */
#ifndef MOE_TRAIN_TGEMM_H
#define MOE_TRAIN_TGEMM_H
#include <stddef.h>

/* C[M][N] (+)= A[M][K] . B[K][N]; accumulate = 0 overwrites C. Leading dimensions in floats. */
void moe_tgemm(float *C, size_t ldc, const float *A, size_t lda, const float *B, size_t ldb, int M, int N, int K,
               int accumulate);
/* The same with plain loops (the oracle). */
void moe_tgemm_ref(float *C, size_t ldc, const float *A, size_t lda, const float *B, size_t ldb, int M, int N, int K,
                   int accumulate);
/* out[c][r] = in[r][c] for an in[rows][cols] matrix. */
void moe_transpose(float *out, const float *in, int rows, int cols);

/* The same with A addressed by strides: A(i, p) = A[i * rsa + p * csa]. (lda, 1) is a row-major A,
 * (1, lda) its transpose, used in place. */
void moe_tgemm_ex(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb, int M,
                  int N, int K, int accumulate);
void moe_tgemm_ex_ref(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb, int M,
                      int N, int K, int accumulate);
/* The AVX2 kernel for one tile of at most 6 rows and 16 columns over K (tgemm_avx2.c). */
void moe_tgemm_tile_avx2(float *C, size_t ldc, const float *A, size_t rsa, size_t csa, const float *B, size_t ldb,
                         int mr, int nr, int K, int accumulate);

/* Linear layers, W stored [out][in] as nn.Linear. scratch holds W^T: in * out floats. */
void moe_linear_fwd(float *y, const float *x, const float *W, int n, int in, int out, float *scratch);
/* dx (+)= dy . W (dx may be NULL); dW += dy^T . x (dW may be NULL), dy^T read in place. */
void moe_linear_bwd(float *dx, int dx_accumulate, float *dW, const float *dy, const float *x, const float *W, int n,
                    int in, int out);
#endif
