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
    int bos_token_id;           /* -1 if config.json names none */
    int n_eos;                  /* generation stops at any of eos_token_id[0..n_eos) */
    int eos_token_id[8];
    const char *format;         /* the weight file format read: "safetensors" or "gguf" */
    int n_stored_experts;       /* experts per MoE layer held in the files: n_experts, or fewer in a merged
                                   checkpoint whose router slots share them (moe merge, docs/COMPRESSION.md) */
} moe_model_info;

/* Load a Hugging Face model folder, or a llama.cpp GGUF file. On failure *out is NULL. */
moe_status moe_model_load(const char *dir, moe_model **out);
void moe_model_free(moe_model *m);
const moe_model_info *moe_model_get_info(const moe_model *m);
/* Fault in every page of the mmapped weights now rather than during the first tokens. */
void moe_model_prefault(moe_model *m);

/* ---- experts larger than memory (docs/OFFLOAD.md) ----------------------------------------- */

/* How to hold routed experts. All zero = every expert stays mapped (the default of moe_model_load).
 * With expert_budget > 0, non-expert weights stay mapped and routed experts are read from the model's
 * files into at most expert_budget bytes of slots, one read per expert, on demand or ahead of use. */
typedef struct moe_load_options {
    int64_t expert_budget;   /* bytes for routed experts; 0 keeps all experts resident */
    const char *cache;       /* eviction policy: "lru" (default), "lfu", "activation", "fate", "none" */
    int prefetch;            /* async reads of the current layer's experts and of the next layer's,
                                predicted by applying its router to the current hidden state */
    int no_predict;          /* with prefetch: only the current layer's async reads, no prediction */
    int direct_io;           /* read with O_DIRECT so that the page cache cannot hide the disk */
    int io_threads;          /* reader threads for prefetch (0: 2) */
    int no_mmap;             /* read the weights into huge-page memory instead of mapping the files:
                                slower to load, faster to decode (not with expert_budget) */
    const char *predictor;   /* with prefetch: a cross-layer predictor fitted by moe_predictor_fit
                                (safetensors) used instead of the next layer's own router, or NULL */
} moe_load_options;

moe_status moe_model_load_opts(const char *dir, const moe_load_options *opts, moe_model **out);

/* Counters of the expert store since load or the last reset. */
typedef struct moe_offload_stats {
    int offloaded;               /* 0: experts are resident and the counters below are zero */
    int n_slots;                 /* experts that fit in the budget at once */
    uint64_t slot_bytes;         /* bytes per slot (the largest expert, page-aligned) */
    uint64_t expert_bytes;       /* all routed experts' bytes in the files */
    uint64_t tokens;             /* tokens routed by the first MoE layer */
    uint64_t lookups;            /* expert acquisitions */
    uint64_t hits;               /* ... found resident */
    uint64_t inflight;           /* ... found being read (prefetch issued, not finished) */
    uint64_t misses;             /* ... read on demand */
    uint64_t predicted;          /* experts predicted for a layer (cross-layer gate) */
    uint64_t predicted_used;     /* ... that the layer then used */
    uint64_t needed_predicted;   /* experts used by layers that had a prediction */
    uint64_t reads, bytes_read;  /* reads issued and bytes read from disk (demand + prefetch) */
    uint64_t wasted_reads;       /* prefetched experts evicted or cancelled before any use */
    double stall_ms;             /* time the compute thread waited for expert reads */
} moe_offload_stats;

void moe_model_offload_stats(const moe_model *m, moe_offload_stats *out);
void moe_model_offload_stats_reset(moe_model *m);

/* ---- dynamic routing and steering (docs/DYNAMIC.md) ----------------------------------------- */

/* Changes to every MoE layer's routing decision at inference, for every router of sparse experts.
 * Zero / NULL fields leave the router's own choice. Lists are "LAYER:VALUE,..." with LAYER a
 * transformer layer index that has routed experts, or * for all of them; expert ids are router slots. */
typedef struct moe_route_options {
    double top_p;            /* (0, 1]: per token, the fewest experts (by router probability) whose probability
                                reaches top_p of the token's total, at most the layer's k; 0: off */
    const char *layer_k;     /* "L:K,...": experts per token of layer L (the router re-selects with that k),
                                or "auto:K" (LExI: per-layer k from the weights alone, K on average); NULL */
    double skip_threshold;   /* > 0: drop experts whose combine weight is below it (each token keeps its
                                largest); 0: off */
    double capacity;         /* > 0: at most ceil(capacity * assignments / experts) tokens per expert per batch
                                (Capacity-Aware Inference); each expert keeps its largest weights; 0: off */
    int reroute;             /* with capacity: the overflow goes to the token's next expert with room */
    const char *disable;     /* "L:E,...": the router never picks them (their logits are -inf); NULL */
    const char *force;       /* "L:E,...": run for every token, weighted like the token's first expert; NULL */
} moe_route_options;

/* Install routing options (NULL: back to the routers' own). Bad values are MOE_EUSAGE with a one-line
 * message. Not while a session of the model is evaluating. */
moe_status moe_model_set_routing(moe_model *m, const moe_route_options *o);

/* Routed experts executed since load (or the last reset): MoE layer-tokens and expert assignments,
 * so experts per token = *assignments / *layer_tokens. */
void moe_model_route_counts(const moe_model *m, uint64_t *layer_tokens, uint64_t *assignments);
void moe_model_route_counts_reset(moe_model *m);

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

/* Hidden states as the forward pass computes them, n_tokens x d_model floats, row-major. */
typedef enum moe_hidden_point {
    MOE_HIDDEN_FFN_INPUT = 0,    /* the FFN's (router's) input: rmsnorm of the residual stream, after attention */
    MOE_HIDDEN_LAYER_OUTPUT = 1  /* the residual stream after the whole layer (transformers' hidden_states[l+1]) */
} moe_hidden_point;

typedef struct moe_hidden {
    int layer;
    moe_hidden_point point;
    int n_tokens, d_model;
    const int *pos;         /* [n_tokens] absolute positions */
    const float *x;         /* [n_tokens][d_model], valid only during the call */
} moe_hidden;

typedef void (*moe_hidden_hook)(void *user, const moe_hidden *h);

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
/* Called at both points of every layer (NULL to stop). */
void moe_session_set_hidden_hook(moe_session *s, moe_hidden_hook hook, void *user);

/* Wall time spent in each part of the forward pass since the session was created (or the timing
 * reset): attention includes the norms before it, moe the routers and experts. */
typedef struct moe_timing {
    double attention_s, moe_s, dense_ffn_s, head_s;
    long tokens;
} moe_timing;
void moe_session_get_timing(const moe_session *s, moe_timing *out);
void moe_session_reset_timing(moe_session *s);

/* Append n tokens (causal prefill). If logits is non-NULL it receives vocab_size floats per
 * position when all_positions is non-zero, or only the last position's otherwise. */
moe_status moe_session_eval(moe_session *s, const int32_t *tokens, int n, float *logits, int all_positions);

/* ---- several sessions in one forward pass (continuous batching) ---------------------------- */

/* One sequence's part of a batched evaluation. */
typedef struct moe_batch_seq {
    moe_session *session;      /* distinct sessions of one model */
    const int32_t *tokens;     /* n_tokens >= 1 tokens appended to that session */
    int n_tokens;
    float *logits;             /* NULL, or vocab_size floats per position (all_positions) or for the last one */
    int all_positions;
} moe_batch_seq;

/* moe_session_eval for several sessions at once: the token-wise parts of the model (embedding, norms,
 * attention projections, dense and MoE FFNs, head) run once over all sequences' new tokens, so each
 * weight is read once per step for the whole batch; attention runs per sequence on its own KV cache.
 * Sequences may have different lengths and positions (prefill chunks beside single decoded tokens).
 * Each sequence's logits equal those of the same tokens evaluated alone up to float32 rounding (the
 * matrix kernels block their sums by the number of rows; tests/unit/test_batch.c bounds the
 * difference), and each session's hooks see only its own tokens. Routers whose decision depends on
 * the whole batch (expert choice, capacity, BASE, Soft MoE) run per sequence. All or nothing: on
 * failure no session's position moves. The sessions must not be used by another thread meanwhile. */
moe_status moe_session_eval_batch(const moe_batch_seq *seqs, int n_seqs);

/* ---- sampling ------------------------------------------------------------------------------ */

/* Choosing the next token from logits as `moe run` does: greedy for temperature <= 0, otherwise
 * top-k, then top-p, then min-p on the temperature-scaled distribution, drawn from a seeded
 * generator (the same seed reproduces the same tokens). */
typedef struct moe_sampling {
    double temperature;   /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    double top_p;         /* >= 1: off */
    double min_p;         /* <= 0: off */
    uint64_t seed;
} moe_sampling;

typedef struct moe_token_sampler moe_token_sampler;
moe_status moe_token_sampler_new(const moe_sampling *p, int vocab_size, moe_token_sampler **out);
/* The next token for one row of vocab_size logits (not modified). */
int32_t moe_token_sampler_next(moe_token_sampler *s, const float *logits);
void moe_token_sampler_free(moe_token_sampler *s);

/* ---- tokenizers: Hugging Face tokenizer.json (BPE: byte-level and SentencePiece-style) ------- */

typedef struct moe_tokenizer moe_tokenizer;

typedef struct moe_tokenizer_info {
    int vocab_size;             /* largest token id + 1, added tokens included */
    int32_t bos_id, eos_id;     /* -1 when neither tokenizer_config.json nor the post-processor names one */
    int add_bos, add_eos;       /* whether the model's own tokenizer puts them around a prompt */
} moe_tokenizer_info;

/* path: a tokenizer.json file or a folder holding one; tokenizer_config.json beside it, if present,
 * supplies BOS/EOS. The tokenizer is read-only after loading and may be shared between threads. */
moe_status moe_tokenizer_load(const char *path, moe_tokenizer **out);
void moe_tokenizer_free(moe_tokenizer *t);
const moe_tokenizer_info *moe_tokenizer_get_info(const moe_tokenizer *t);
int moe_tokenizer_vocab_size(const moe_tokenizer *t);
/* Text (UTF-8, len bytes) to ids exactly as tokenizers' encode(text, add_special_tokens=False):
 * special-token strings in the text become their ids; BOS/EOS are not added. *ids is malloc'ed
 * (free() it). Invalid UTF-8 is refused. */
moe_status moe_tokenizer_encode(const moe_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n);
/* Ids to text as tokenizers' decode(ids, skip_special_tokens); *text is malloc'ed and NUL-terminated. */
moe_status moe_tokenizer_decode(const moe_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **text,
                                size_t *len);
/* The vocabulary string of a token (e.g. "Ġthe", "<0x0A>", "<|im_start|>"), NULL if the id has none.
 * Owned by the tokenizer; *len (optional) gets its length. */
const char *moe_tokenizer_piece(const moe_tokenizer *t, int32_t id, size_t *len);
/* The id of a vocabulary string, -1 if none. */
int32_t moe_tokenizer_token_id(const moe_tokenizer *t, const char *piece, size_t len);
int moe_tokenizer_is_special(const moe_tokenizer *t, int32_t id);

/* Streaming decode for generation: push ids one at a time and get the new text, which is only given
 * out once its characters are complete (a character may span several byte tokens). The text stays
 * valid until the next call on the same stream. The pieces concatenate to the full decode when the
 * ids spell valid UTF-8; flush() gives out whatever is held back (as U+FFFD if unfinished). */
typedef struct moe_detokenizer moe_detokenizer;
moe_status moe_detokenizer_new(const moe_tokenizer *t, int skip_special, moe_detokenizer **out);
moe_status moe_detokenizer_push(moe_detokenizer *d, int32_t id, const char **text, size_t *len);
moe_status moe_detokenizer_flush(moe_detokenizer *d, const char **text, size_t *len);
void moe_detokenizer_free(moe_detokenizer *d);

#ifdef __cplusplus
}
#endif
#endif
