/* fuzz_trace.c - routing traces (tools/trace.h): parse; on success check what the statistics rely on
 * (expert ids in range, ascending layers and pieces) and compute the statistics of small traces; on
 * failure the message is one line starting with the path. Must never crash or hang. */
#include "fuzz_common.h"
#include "tools/trace.h"
#include "tools/trace_stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_trace t;
    if (moe_trace_parse("fuzz.bin", data, size, &t) != MOE_OK) {
        fuzz_check_message("fuzz.bin");
        return 0;
    }
    size_t T = (size_t)t.n_tokens, L = t.n_moe, K = t.k;
    for (size_t i = 0; i < T * L * K; i++)
        FUZZ_ASSERT(t.expert[i] == MOE_TRACE_NO_EXPERT || t.expert[i] < t.n_experts);
    for (size_t l = 1; l < L; l++) FUZZ_ASSERT(t.layer[l] > t.layer[l - 1]);
    for (uint32_t i = 1; i < t.n_pieces; i++) FUZZ_ASSERT(t.piece_id[i] > t.piece_id[i - 1]);
    if (t.n_experts <= 64 && L <= 16 && T <= 4096) {
        moe_trace_stats s;
        if (moe_trace_stats_compute(&t, &s) == MOE_OK) {
            uint64_t used = 0;
            for (size_t l = 0; l < L; l++)
                for (uint32_t e = 0; e < t.n_experts; e++) {
                    FUZZ_ASSERT(s.layers[l].load[e] <= T);
                    FUZZ_ASSERT(s.layers[l].coact[(size_t)e * t.n_experts + e] == s.layers[l].load[e]);
                    used += s.layers[l].load[e];
                }
            FUZZ_ASSERT(used <= T * L * K);
            moe_trace_stats_free(&s);
        }
    }
    moe_trace_free(&t);
    return 0;
}
