/* matmul_shapes.h - tile shapes and block sizes of the kernels in matmul_tmpl.h, by vector width.
 * Included after a vec_*.h header (which sets VW). Kept apart from the ISA files so that the test
 * build of the 16-lane logic (tests/unit/vec_emu16.h) uses exactly the AVX-512 shapes.
 *
 * Decode: N x rows by R W rows by U accumulators each (GEMVn_R, GEMVn_U for n = N): the
 * accumulators, the N x vectors (2N for the bf16 pair path) and one weight vector must fit the
 * register file (16 ymm / 32 zmm), with >= 8 independent FMA chains where the row count allows.
 * Prefill: MM_MR x rows by 4 W rows per micro-tile; MM_KC columns of `in` per block (the 4-row
 * weight buffer is 4*MM_KC floats, L1-resident); MM_MC x rows per block (MM_MC*MM_KC floats of x
 * stay in L2; a multiple of MM_MR so that only the last block has a narrower tile); the blocked
 * path takes over from n = MM_MIN_N. The values come from bench/bench_matmul.c runs. */
#ifndef VW
#error "include a vec_*.h header first"
#endif
#if VW == 8
#define GEMV1_R 4
#define GEMV1_U 2
#define GEMV2_R 4
#define GEMV2_U 1
#define GEMV3_R 4
#define GEMV3_U 1
#define GEMV4_R 2
#define GEMV4_U 1
#define MM_MR 3
#define MM_KC 256
#define MM_MC 126
#define MM_MIN_N 8
#else
#define GEMV1_R 4
#define GEMV1_U 2
#define GEMV2_R 4
#define GEMV2_U 2
#define GEMV3_R 4
#define GEMV3_U 1
#define GEMV4_R 4
#define GEMV4_U 1
#define MM_MR 6
#define MM_KC 256
#define MM_MC 120
#define MM_MIN_N 8
#endif
