/* config_moe.c - the moe-specific config.json keys, read for every model_type after the family's own
 * keys. They describe what transformers cannot: a router from the zoo (docs/ROUTERS.md) and shared
 * experts beside a layout that has none (qwen3_moe, mixtral). transformers ignores unknown keys, so
 * it would load such a checkpoint with its own router: `moe train` uses them only where needed, and
 * then names the model_type "moe_<layout>", which transformers refuses (config.c strips the prefix).
 *   "moe_router": "expert_choice"            a name from the router registry
 *   "moe_router_params": {"capacity_factor": 1.0, "top_p": 0.5, "slots": 1, "rank": 32, "seed": 1,
 *                         "routed_scaling": 1.0}   (all optional)
 *   "moe_shared_expert_intermediate_size": 256   always-on experts fused into one FFN, tensors
 *                                                model.layers.L.<block>.shared_experts.{gate,up,down}_proj
 *   "moe_expert_slots": 64                       a merged checkpoint (`moe merge`, docs/COMPRESSION.md): the
 *                                                router keeps 64 rows (slots) while the family's expert count
 *                                                says how many experts the files hold; the I32 tensor
 *                                                model.layers.L.<block>.moe_expert_map [slots] names the
 *                                                stored expert of each slot. The router's row count differs
 *                                                from the expert count, so transformers refuses the folder
 *                                                instead of loading it as something else. */
#include "core/error.h"
#include "io/json.h"
#include "model/config.h"
#include "moe/router.h"
#include <stdio.h>
#include <string.h>

moe_status moe_config_moe_keys(const char *path, const cJSON *root, moe_config *c) {
    const char *name;
    MOE_TRY(moe_json_str(path, root, "moe_router", MOE_JSON_OPTIONAL, c->router, &name));
    if (strcmp(name, c->router) != 0) {
        if (!moe_router_find(name) || strlen(name) >= sizeof c->router)
            return moe_fail(MOE_EINPUT, "%s: field \"moe_router\" = \"%.40s\" is not a known router (%s)", path, name,
                            moe_router_names());
        snprintf(c->router, sizeof c->router, "%s", name);
        c->has_score_bias = moe_router_find(name)->score_bias;   /* the bias tensor goes with the router */
    }
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "moe_router_params");
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp)) return moe_fail(MOE_EINPUT, "%s: field \"moe_router_params\" must be an object", path);
        char p[600];
        snprintf(p, sizeof p, "%s: moe_router_params", path);
        for (const cJSON *e = rp->child; e; e = e->next)
            if (strcmp(e->string, "capacity_factor") && strcmp(e->string, "top_p") && strcmp(e->string, "slots") &&
                strcmp(e->string, "rank") && strcmp(e->string, "seed") && strcmp(e->string, "routed_scaling"))
                return moe_fail(MOE_EINPUT, "%s: unknown key \"%.40s\"", p, e->string);
        int64_t seed;
        MOE_TRY(moe_json_num(p, rp, "capacity_factor", 0, 1.0, 0, 1e6, &c->capacity_factor));
        MOE_TRY(moe_json_num(p, rp, "top_p", 0, 0.5, 0, 1, &c->top_p));
        MOE_TRY(moe_json_int32(p, rp, "slots", 0, 1, 0, 1 << 16, &c->slots));
        MOE_TRY(moe_json_int32(p, rp, "rank", 0, 0, 0, 1 << 20, &c->router_rank));
        MOE_TRY(moe_json_int(p, rp, "seed", 0, 0, 0, (int64_t)1 << 53, &seed));
        MOE_TRY(moe_json_num(p, rp, "routed_scaling", 0, c->routed_scaling, -1e6, 1e6, &c->routed_scaling));
        c->router_seed = (uint64_t)seed;
    }
    if (moe_json_has(root, "moe_shared_expert_intermediate_size")) {
        int w;
        MOE_TRY(moe_json_int32(path, root, "moe_shared_expert_intermediate_size", 1, 0, 0, 1 << 20, &w));
        if (w > 0 && c->shared_intermediate > 0)
            return moe_fail(MOE_EINPUT, "%s: field \"moe_shared_expert_intermediate_size\" conflicts with the shared experts of %s",
                            path, c->model_type);
        if (w > 0) {
            c->shared_intermediate = w;
            c->n_shared_experts = c->moe_intermediate > 0 && w % c->moe_intermediate == 0 ? w / c->moe_intermediate : 1;
            c->shared_name = "shared_experts";
            c->shared_at_layer = c->shared_fused = 0;
        }
    }
    if (moe_json_has(root, "moe_expert_slots")) {
        int slots;
        MOE_TRY(moe_json_int32(path, root, "moe_expert_slots", 1, 0, 1, 65536, &slots));
        if (c->n_experts < 1 || slots < c->n_experts)
            return moe_fail(MOE_EINPUT, "%s: field \"moe_expert_slots\" = %d is fewer than the %d stored experts", path, slots,
                            c->n_experts);
        c->n_stored_experts = c->n_experts;
        c->n_experts = slots;
    }
    return MOE_OK;
}
