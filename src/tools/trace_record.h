/* trace_record.h - recording a routing trace (tools/trace.h) of a token sequence: the library side of
 * `moe trace`. The model runs its ordinary forward pass over windows of ctx tokens; the routing hook
 * (moe_session_set_route_hook) reports every MoE layer's decision, which is all a trace needs. */
#ifndef MOE_TOOLS_TRACE_RECORD_H
#define MOE_TOOLS_TRACE_RECORD_H
#include "model/model.h"
#include "tools/trace.h"

typedef struct moe_trace_options {
    int ctx;                          /* tokens per window; each window is one sequence from position 0 */
    const moe_tokenizer *tok;         /* for the token texts stored in the trace, or NULL */
    const char *model_name;           /* stored in the header */
    void (*progress)(void *user, int done, int total);
    void *user;
} moe_trace_options;

/* Run ids[0..n) through m and write the trace to path. Slots per token and layer: the router's top-k
 * for routers that choose a fixed number, otherwise the expert count. */
moe_status moe_trace_record(moe_model *m, const int32_t *ids, int n, const moe_trace_options *o, const char *path);
#endif
