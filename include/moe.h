/* moe.h - the public C API of libmoe, an engine for sparse Mixture-of-Experts transformers.
 *
 * Conventions (after Lua's API): every function that can fail returns a moe_status; on failure a
 * one-line message naming the file, field or value at fault is available from moe_last_error()
 * (thread-local, valid until the next failing call on the same thread). Handles are opaque.
 * Nothing here keeps global mutable state except the thread count and the SIMD override.
 *
 * Data flow: moe_model_load() maps a Hugging Face model folder (config.json + safetensors);
 * moe_session_new() adds a KV cache; moe_session_eval() appends tokens and returns logits.
 * Routing decisions of every MoE layer can be observed through moe_session_set_route_hook(). */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOE_VERSION_STRING "0.1.0"

typedef enum moe_status {
    MOE_OK = 0,
    MOE_EUSAGE = 1,     /* bad flags or arguments from the caller */
    MOE_EINPUT = 2,     /* bad, truncated, hostile or unsupported input file */
    MOE_ENOMEM = 3,     /* allocation failed or a size would overflow */
    MOE_EIO = 4,        /* the operating system refused a read or write */
    MOE_EINTERNAL = 5,  /* a bug in libmoe */
    MOE_EINTERRUPTED = 6 /* stopped by the caller (e.g. Ctrl-C) */
} moe_status;

/* The message of the last failure on this thread, "" if none. */
const char *moe_last_error(void);
/* Process exit code for a status: 0 ok, 1 usage, 2 bad input (also I/O and memory), 3 internal. */
int moe_exit_code(moe_status st);

/* Worker threads for all kernels (default: number of online CPUs). */
void moe_set_threads(int n);
int moe_get_threads(void);
/* Name of the SIMD level in use: "avx512", "avx2" or "scalar". */
const char *moe_simd_name(void);

/* ---- models ---------------------------------------------------------------------------- */

typedef struct moe_model moe_model;

typedef struct moe_model_info {
    const char *model_type;     /* config.json model_type, e.g. "qwen3_moe" */
    const char *weight_dtype;   /* dominant dtype of the matrices: "f32", "bf16", "f16" */
    int n_layers, n_moe_layers, hidden_size, vocab_size;
    int n_heads, n_kv_heads;
    int n_experts;              /* routed experts per MoE layer (0 for dense models) */
    int top_k;                  /* experts chosen per token */
    int n_shared_experts;       /* always-on experts per MoE layer */
    int max_position;           /* config max_position_embeddings */
    uint64_t n_params;          /* every parameter, embedding and head included */
    uint64_t n_active_params;   /* parameters used for one token */
    uint64_t bytes_per_token;   /* bytes of weights read for one decoded token */
} moe_model_info;

/* Load a Hugging Face model folder. On failure *out is NULL. */
moe_status moe_model_load(const char *dir, moe_model **out);
void moe_model_free(moe_model *m);
const moe_model_info *moe_model_get_info(const moe_model *m);

/* ---- routing observation ------------------------------------------------------------------ */

/* One MoE layer's decision for a batch of tokens. Token-choice routers give top_k assignments per
 * token, stored token-major: expert[t*top_k + j], weight[t*top_k + j]. scores holds the router's
 * per-expert probabilities (softmax or sigmoid, before top-k), n_tokens x n_experts. Routers with a
 * variable number of experts per token (expert choice, capacity drops, top-p, sparsemax) report
 * top_k = the largest count in the batch and pad with expert -1, weight 0. */
typedef struct moe_routing {
    int layer;              /* index of the transformer layer */
    int n_tokens, n_experts, top_k;
    const int *pos;         /* [n_tokens] absolute position of each token in the sequence */
    const int *expert;      /* [n_tokens*top_k] chosen expert ids */
    const float *weight;    /* [n_tokens*top_k] combine weights applied to the experts' outputs */
    const float *scores;    /* [n_tokens*n_experts] router scores */
} moe_routing;

typedef void (*moe_route_hook)(void *user, const moe_routing *r);

/* ---- sessions: a KV cache and scratch space over a loaded model --------------------------- */

typedef struct moe_session moe_session;

/* max_ctx <= 0 means the model's max_position_embeddings, capped at 4096. */
moe_status moe_session_new(moe_model *m, int max_ctx, moe_session **out);
void moe_session_free(moe_session *s);
/* Forget all tokens (the KV cache is cleared). */
void moe_session_reset(moe_session *s);
/* Number of tokens already in the KV cache. */
int moe_session_pos(const moe_session *s);
int moe_session_max_ctx(const moe_session *s);
void moe_session_set_route_hook(moe_session *s, moe_route_hook hook, void *user);

/* Append n tokens (causal prefill). If logits is non-NULL it receives vocab_size floats per
 * position when all_positions is non-zero, or only the last position's otherwise. */
moe_status moe_session_eval(moe_session *s, const int32_t *tokens, int n, float *logits, int all_positions);

#ifdef __cplusplus
}
#endif
#endif
