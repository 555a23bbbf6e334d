/* fuzz_predictor.c - predictor files (moe/predictor.h): parse as safetensors, bind to a fixed model
 * shape (4 layers, MoE at 0, 1 and 3, 4 experts, d_model 8), then read every bound float. Must never
 * crash or hang, and a successful bind must hand out exactly the tensors the shape requires. */
#include "io/safetensors.h"
#include "moe/predictor.h"
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    enum { L = 4, E = 4, D = 8 };
    static const unsigned char is_moe[L] = {1, 1, 0, 1};
    moe_st_file f;
    if (moe_st_parse("fuzz.safetensors", data, size, &f) != MOE_OK) { moe_st_clear(&f); return 0; }
    const float *w[2 * L], *b[2 * L];
    if (moe_predictor_bind(&f, L, is_moe, E, D, w, b) == MOE_OK) {
        float sum = 0;
        for (int l = 0; l < L; l++)
            for (int g = 0; g < 2; g++) {
                int want = l == 1 || l == 3;
                if (!w[2 * l + g] != !want || !b[2 * l + g] != !want) abort();
                for (int i = 0; want && i < E * D; i++) sum += w[2 * l + g][i];
                for (int i = 0; want && i < E; i++) sum += b[2 * l + g][i];
            }
        if (sum == 12345.678f) abort(); /* keep the reads */
    }
    moe_st_clear(&f);
    return 0;
}
