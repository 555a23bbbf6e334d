/* membw.h - measured memory read bandwidth, the roofline every decode benchmark is compared to. */
#ifndef MOE_CORE_MEMBW_H
#define MOE_CORE_MEMBW_H
#include <stddef.h>

/* Best-of-`reps` read bandwidth in bytes/s over a buffer of `bytes` (>= 4x the last-level cache),
 * read by `threads` OpenMP threads with the widest loads available. Returns 0 if allocation fails. */
double moe_measure_read_bandwidth(size_t bytes, int threads, int reps);
#endif
