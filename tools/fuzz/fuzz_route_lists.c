/* fuzz_route_lists.c - arbitrary bytes as the lists of --disable-experts, --force-experts and --layer-k
 * (moe/route_policy.h) for a model of 6 layers (the odd ones with 8 routed experts): the first byte
 * picks the list, the rest is its text. A list that parses must leave a usable policy (k within
 * 0..experts, nothing set on dense layers, no layer with every expert disabled, no expert both
 * disabled and forced); one that does not must fail with one line starting with the flag. */
#include "fuzz_common.h"
#include "moe/route_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const unsigned char is_moe[6] = {0, 1, 0, 1, 0, 1};
    static const char *flags[3] = {"--disable-experts", "--force-experts", "--layer-k"};
    int which = data[0] % 3;
    char *spec = malloc(size);
    if (!spec) return 0;
    memcpy(spec, data + 1, size - 1);
    spec[size - 1] = 0;
    moe_route_policy *p = NULL;
    if (moe_route_policy_new(6, 8, &p) != MOE_OK) { free(spec); return 0; }
    /* a disabled expert first, so that forcing it or disabling the rest is refused */
    p->disabled[1 * 8 + 0] = 1;
    moe_status st = which == 2 ? moe_route_policy_parse_k(p, flags[2], spec, is_moe)
                               : moe_route_policy_parse_experts(p, flags[which], spec, is_moe,
                                                                which ? p->forced : p->disabled);
    if (st != MOE_OK) {
        fuzz_check_message(flags[which]);
    } else {
        for (int l = 0; l < 6; l++) {
            int nd = 0;
            FUZZ_ASSERT(p->k[l] >= 0 && p->k[l] <= 8 && (is_moe[l] || p->k[l] == 0));
            for (int e = 0; e < 8; e++) {
                unsigned char d = p->disabled[l * 8 + e], f = p->forced[l * 8 + e];
                FUZZ_ASSERT(d <= 1 && f <= 1 && !(d && f) && (is_moe[l] || (!d && !f)));
                nd += d;
            }
            FUZZ_ASSERT(nd < 8);
        }
    }
    moe_route_policy_free(p);
    free(spec);
    return 0;
}
