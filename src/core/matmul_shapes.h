/* matmul_shapes.h - tile shapes and block sizes of the kernels in matmul_tmpl.h, by vector width.
 * Included after a vec_*.h header (which sets VW). Kept apart from the ISA files so that the test
 * build of the 16-lane logic (tests/unit/vec_emu16.h) uses exactly the AVX-512 shapes.
 *
 * Decode: N x rows by R W rows by U accumulators each (GEMVn_R, GEMVn_U for n = N): the
 * accumulators, the N x vectors (2N for the bf16 pair path) and one weight vector must fit the
 * register file (16 ymm / 32 zmm), with >= 8 independent FMA chains where the row count allows.
 * bf16 decode uses the even/odd pair loads (half the widening work) for n <= GEMV_PAIR_MAXN: it
 * needs two x vectors per row, which with 16 ymm registers only fits up to n = 2.
 * Prefill: MM_MR x rows by 4 W rows per micro-tile; MM_KC columns of `in` per block (the 4-row
 * weight buffer is 4*MM_KC floats, L1-resident); MM_MC x rows per block (MM_MC*MM_KC floats of x
 * stay in L2; a multiple of MM_MR so that only the last block has a narrower tile); the blocked
 * path takes over from n = MM_MIN_N.
 * Large prefill (n >= MMB_MIN_N): MMB_MR x rows by 2*VW W rows of a transposed panel of MMB_KC
 * columns (AVX2: 6 x 16, 12 accumulators; panel 512 x 16 floats = 32 KiB; AVX-512: 12 x 32, 24
 * accumulators, panel 128 x 32 floats = 16 KiB), MMB_MC x rows per block.
 * The AVX2 values were chosen with interleaved runs against OpenBLAS sgemm (the machine is shared
 * and noisy: see docs/PERFORMANCE_KERNELS.md); the AVX-512 ones are scaled by register count and
 * cache size, untuned. */
#ifndef VW
#error "include a vec_*.h header first"
#endif
#if VW == 8
#ifndef GEMV1_R
#define GEMV1_R 4
#endif
#ifndef GEMV1_U
#define GEMV1_U 2
#endif
#ifndef GEMV2_R
#define GEMV2_R 4
#endif
#ifndef GEMV2_U
#define GEMV2_U 1
#endif
#ifndef GEMV3_R
#define GEMV3_R 4
#endif
#ifndef GEMV3_U
#define GEMV3_U 1
#endif
#ifndef GEMV4_R
#define GEMV4_R 3
#endif
#ifndef GEMV_PAIR_MAXN
#define GEMV_PAIR_MAXN 2
#endif
#ifndef GEMV4_U
#define GEMV4_U 1
#endif
#ifndef MM_MR
#define MM_MR 3
#endif
#ifndef MM_KC
#define MM_KC 256
#endif
#ifndef MM_MC
#define MM_MC 126
#endif
#ifndef MM_MIN_N
#define MM_MIN_N 8
#endif
#ifndef MMB_MR
#define MMB_MR 6
#endif
#ifndef MMB_KC
#define MMB_KC 512
#endif
#ifndef MMB_MC
#define MMB_MC 192
#endif
#ifndef MMB_MIN_N
#define MMB_MIN_N 32
#endif
#else
#define GEMV1_R 4
#define GEMV1_U 2
#define GEMV2_R 4
#define GEMV2_U 2
#define GEMV3_R 4
#define GEMV3_U 1
#define GEMV4_R 4
#define GEMV4_U 1
#define GEMV_PAIR_MAXN 4
#define MM_MR 6
#define MM_KC 256
#define MM_MC 120
#define MM_MIN_N 8
#define MMB_MR 12
#define MMB_KC 128
#define MMB_MC 192
#define MMB_MIN_N 32
#endif
