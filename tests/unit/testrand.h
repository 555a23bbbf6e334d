/* testrand.h - the random numbers of the kernel tests: splitmix64 over a global state that each test
 * seeds (a fixed list, then one fresh seed printed for replay). Header-only: one test, one executable. */
#ifndef MOE_TESTS_TESTRAND_H
#define MOE_TESTS_TESTRAND_H
#include <math.h>
#include <stdint.h>

static uint64_t g_rng;

static inline uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline int rint_(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }
/* Uniform in [-1,1) scaled by a random power of two in [2^-3, 2^3]: values of mixed magnitude. */
static inline float rfloat(void) {
    float u = (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    return ldexpf(u, rint_(-3, 3));
}
#endif
