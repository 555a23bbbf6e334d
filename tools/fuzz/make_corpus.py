"""make_corpus.py - regenerate the seed corpora in tests/fuzz_corpus/{safetensors,config,json,predictor,gguf,trace}
and the tokenizer's growth seeds (tests/fuzz_corpus/tokenizer/chain_*, json_*growth*, json_*rescan*).

Small valid inputs of every shape the parsers accept (each model_type, each rope scaling type,
sharded-index JSON, safetensors with several dtypes) plus a few near-misses, so the fuzzers start
from the interesting side of every check. Plain Python, no dependencies. Usage: python3 make_corpus.py
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fuzz_corpus")


def put(kind, name, data):
    d = os.path.join(ROOT, kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4,
         "I64": 8, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def st_image(tensors, meta=True, prefix=True, align=False):
    """tensors: [(name, dtype, shape)]; data bytes are a counter pattern. align: pad the header with
    spaces so that the data starts at a multiple of 8 (as writers do)."""
    h, off, data = {}, 0, b""
    if meta:
        h["__metadata__"] = {"format": "pt"}
    for name, dt, shape in tensors:
        n = SIZES[dt]
        for s in shape:
            n *= s
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        data += bytes((off + i) & 0xff for i in range(n))
        off += n
    hb = json.dumps(h, separators=(",", ":")).encode()
    if align:
        hb += b" " * (-len(hb) % 8)
    return (struct.pack("<Q", len(hb)) if prefix else b"") + hb + data


def trace_image(layers, n_layers, E, K, tokens, pieces, model="m", vocab=50):
    """A routing trace (src/tools/trace.h): tokens = [(id, pos, [entropy per layer], [(expert, weight)] * L*K)]."""
    L = len(layers)
    name = model.encode()
    out = b"MOETRACE" + struct.pack("<IIIIIIQIIIIQ", 1, 64, n_layers, L, E, K, len(tokens), vocab, len(pieces),
                                    len(name), 0, 0)
    out += name + b"\0" * (-len(name) % 4) + b"".join(struct.pack("<I", l) for l in layers)
    for tid, pos, ent, slots in tokens:
        rec = struct.pack("<ii", tid, pos) + b"".join(struct.pack("<f", h) for h in ent)
        rec += b"".join(struct.pack("<f", w) for _, w in slots) + b"".join(struct.pack("<H", e) for e, _ in slots)
        out += rec + b"\0" * (-len(rec) % 4)
    for pid, text in pieces:
        b = text.encode()
        out += struct.pack("<iI", pid, len(b)) + b
    return out


def main():
    small = [("model.embed_tokens.weight", "F32", [4, 2]), ("model.norm.weight", "BF16", [2]),
             ("lm_head.weight", "F16", [4, 2])]
    put("safetensors", "valid_raw", st_image(small))
    put("safetensors", "valid_braced", st_image(small, prefix=False))
    put("safetensors", "all_dtypes", st_image([(f"t.{d}", d, [3]) for d in SIZES], meta=False, prefix=False))
    put("safetensors", "empty_header", struct.pack("<Q", 2) + b"{}")
    put("safetensors", "zero_size", st_image([("a", "F32", [0]), ("b", "F32", [2, 0, 3])], prefix=False))
    put("safetensors", "nd", st_image([("x", "BF16", [1, 2, 1, 2, 1, 2, 1, 2])], prefix=False))
    put("safetensors", "near_overlap", b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
        b'"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}' + bytes(6))
    put("safetensors", "near_hole", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}' + bytes(3))
    put("safetensors", "near_truncated", st_image(small)[:-3])

    base = {"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False}
    cfgs = {
        "qwen3_moe": dict(base, model_type="qwen3_moe", head_dim=4, num_experts=4, num_experts_per_tok=2,
                          moe_intermediate_size=4, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[0]),
        "qwen2_moe": dict(base, model_type="qwen2_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=4,
                          shared_expert_intermediate_size=8, qkv_bias=True, use_sliding_window=False),
        "mixtral": dict(base, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, sliding_window=None),
        "olmoe": dict(base, model_type="olmoe", num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                      clip_qkv=8.0),
        "deepseek_v2": dict(base, model_type="deepseek_v2", num_key_value_heads=2, q_lora_rank=None, kv_lora_rank=4,
                            qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4, n_routed_experts=4,
                            num_experts_per_tok=2, moe_intermediate_size=4, n_shared_experts=1,
                            first_k_dense_replace=1, topk_method="group_limited_greedy", n_group=2, topk_group=1,
                            routed_scaling_factor=1.0),
        "deepseek_v3": dict(base, model_type="deepseek_v3", num_key_value_heads=2, q_lora_rank=4, kv_lora_rank=4,
                            qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4, n_routed_experts=8,
                            num_experts_per_tok=2, moe_intermediate_size=4, n_shared_experts=1,
                            first_k_dense_replace=1, n_group=2, topk_group=1, routed_scaling_factor=2.5,
                            rope_interleave=True,
                            rope_scaling={"type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                                          "beta_fast": 32, "beta_slow": 1, "original_max_position_embeddings": 16}),
        "llama": dict(base, model_type="llama", rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                              "original_max_position_embeddings": 32}),
        "mistral": dict(base, model_type="mistral", sliding_window=16),
        "qwen2": dict(base, model_type="qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=1,
                      layer_types=["full_attention", "sliding_attention"],
                      rope_scaling={"rope_type": "linear", "factor": 2.0}),
        # the families of issue 10: partial rotary, longrope, LayerNorm, multipliers, their own key names
        "glm4_moe": dict(base, model_type="glm4_moe", head_dim=4, n_routed_experts=8, num_experts_per_tok=2,
                         moe_intermediate_size=4, n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1,
                         use_qk_norm=True, attention_bias=True, partial_rotary_factor=0.5),
        "minimax_m2": dict(base, model_type="minimax_m2", head_dim=8, rotary_dim=4, num_local_experts=4,
                           num_experts_per_tok=2),
        "granitemoe": dict(base, model_type="granitemoe", num_local_experts=4, num_experts_per_tok=2,
                           attention_multiplier=0.25, embedding_multiplier=12.0, residual_multiplier=0.22,
                           logits_scaling=6.0),
        "granitemoeshared": dict(base, model_type="granitemoeshared", num_local_experts=4, num_experts_per_tok=2,
                                 shared_intermediate_size=8),
        "ernie4_5_moe": dict(base, model_type="ernie4_5_moe", moe_num_experts=4, moe_k=2, moe_intermediate_size=4,
                             moe_num_shared_experts=2, moe_layer_start_index=1, moe_layer_end_index=-1,
                             moe_layer_interval=1, moe_norm_min=1e-12, use_bias=False),
        "phimoe": dict(base, model_type="phimoe", num_local_experts=4, num_experts_per_tok=2, attention_bias=True,
                       lm_head_bias=True, router_jitter_noise=0.01, sliding_window=None,
                       rope_scaling={"type": "longrope", "short_factor": [1.0, 1.5], "long_factor": [2.0, 3.0],
                                     "short_mscale": 1.2, "long_mscale": 1.2, "original_max_position_embeddings": 16}),
        "gpt_oss": dict(base, model_type="gpt_oss", head_dim=4, num_local_experts=4, num_experts_per_tok=2,
                        sliding_window=4, swiglu_alpha=1.702, swiglu_limit=7.0,
                        layer_types=["sliding_attention", "full_attention"],
                        rope_scaling={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                      "truncate": False, "original_max_position_embeddings": 4096}),
    }
    for name, c in cfgs.items():
        put("config", name + ".json", json.dumps(c, indent=1))
    put("config", "merged.json", json.dumps(dict(cfgs["qwen3_moe"], moe_expert_slots=cfgs["qwen3_moe"]["num_experts"] * 2)))
    put("config", "near_merged.json", json.dumps(dict(cfgs["qwen3_moe"], moe_expert_slots=1)))
    put("config", "near_topk.json", json.dumps(dict(cfgs["qwen3_moe"], num_experts_per_tok=5)))
    put("config", "near_dup.json", '{"model_type": "llama", "hidden_size": 8, "hidden_size": 8}')
    put("config", "near_rope.json", json.dumps(dict(cfgs["llama"], rope_scaling={"type": "dynamic", "factor": 2})))
    put("config", "transformers5.json", json.dumps(dict(cfgs["qwen2"], rope_parameters={"rope_type": "default",
                                                                                        "rope_theta": 1e6})))
    # a moe-only checkpoint of moe train: model_type "moe_<family>" with the moe-specific keys
    put("config", "moe_only.json", json.dumps(dict(cfgs["qwen3_moe"], model_type="moe_qwen3_moe", moe_router="deepseek_v3",
                                                   moe_router_params={"routed_scaling": 2.0},
                                                   moe_shared_expert_intermediate_size=8)))
    # transformers 5's spellings: rope_parameters with theta inside, per layer type; the expert count's alias
    q3 = {k: v for k, v in cfgs["qwen3_moe"].items() if k not in ("num_experts", "rope_theta")}
    put("config", "transformers5_qwen3_moe.json", json.dumps(dict(q3, num_local_experts=4, rope_parameters={
        "full_attention": {"rope_type": "default", "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e6}})))
    ds2 = {k: v for k, v in cfgs["deepseek_v2"].items() if k not in ("n_routed_experts", "rope_theta")}
    put("config", "transformers5_deepseek_v2.json", json.dumps(dict(ds2, num_experts=4, rope_parameters={
        "rope_type": "yarn", "rope_theta": 1e4, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 16})))

    # fuzz_predictor binds to 4 layers, MoE at 0, 1 and 3, 4 experts, d_model 8
    pred = [(f"layers.{l}.{g}.{k}", "F32", [4, 8] if k == "weight" else [4])
            for l in (1, 3) for g in ("early", "late") for k in ("weight", "bias")]
    put("predictor", "valid.safetensors", st_image(pred, align=True))
    put("predictor", "near_missing.safetensors", st_image(pred[:-1], align=True))
    put("predictor", "near_extra.safetensors", st_image(pred + [("layers.2.early.bias", "F32", [4])], align=True))
    put("predictor", "near_dtype.safetensors", st_image([(n, "F16", s) for n, _, s in pred], align=True))
    put("predictor", "near_name.safetensors", st_image([(n.replace("layers.1.", "layers.01."), d, s) for n, d, s in pred]))

    # fuzz_trace: routing traces of 2 MoE layers (of 3), 4 experts, 2 slots
    toks = [(7, 0, [1.2, 0.9], [(1, 0.6), (3, 0.4), (0, 0.7), (2, 0.3)]),
            (9, 1, [-1.0, 1.1], [(2, 1.0), (0xFFFF, 0.0), (3, 0.5), (1, 0.5)]),
            (7, 2, [0.3, 0.0], [(0, 0.9), (1, 0.1), (2, 0.8), (0, 0.2)])]
    put("trace", "valid.bin", trace_image([0, 2], 3, 4, 2, toks, [(7, "a"), (9, "\u00e9 b")]))
    put("trace", "no_pieces.bin", trace_image([1], 2, 4, 2, [(t[0], t[1], t[2][:1], t[3][:2]) for t in toks], []))
    put("trace", "near_expert.bin", trace_image([0, 2], 3, 4, 2, [(7, 0, [1.0, 1.0], [(4, 0.5), (1, 0.5), (0, 1), (1, 0)])], []))
    put("trace", "near_order.bin", trace_image([2, 0], 3, 4, 2, toks, []))
    put("trace", "near_piece.bin", trace_image([0, 2], 3, 4, 2, toks, [(9, "a"), (7, "b")]))

    put("json", "index.json", json.dumps({"metadata": {"total_size": 96},
                                          "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                         "b": "model-00002-of-00002.safetensors"}}))
    put("json", "types.json", '{"i": 3, "big": 9223372036854775807, "neg": -9223372036854775808, "f": 2.5, '
        '"e": 1e308, "t": true, "n": null, "s": "\\u00e9\\ud83d\\ude00", "a": [1, [2, {"x": {}}]], '
        '"o": {"k": 1, "k2": "v"}}')
    put("json", "edge_numbers.json", '{"a": -0, "b": 1E+2, "c": 0.0000001, "d": 18446744073709551616, "e": 4.9e-324}')


# ---- GGUF (io/gguf.h): a minimal writer, little-endian, version 3 ----------------------------------

GG_T = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
        "u64": 10, "i64": 11, "f64": 12}
GG_FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<B",
          "u64": "<Q", "i64": "<q", "f64": "<d"}
# ggml type id -> (block, bytes)
GG_TYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 12: (256, 144),
            13: (256, 176), 14: (256, 210), 30: (1, 2), 39: (32, 17)}


def gg_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gg_val(t, v):
    if t == "str":
        return gg_str(v)
    if t.startswith("arr:"):
        et = t[4:]
        out = struct.pack("<IQ", GG_T[et], len(v))
        return out + b"".join(gg_val(et, x) for x in v)
    return struct.pack(GG_FMT[t], v)


def gguf_image(kvs, tensors, align=32, version=3, bad_offset=None):
    """kvs: [(key, type, value)] (type "arr:u32" for arrays); tensors: [(name, ggml type, ne)] with
    ne innermost first; data is a counter pattern with f16 scales that stay finite."""
    h = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        h += gg_str(k) + struct.pack("<I", GG_T["arr"] if t.startswith("arr:") else GG_T[t]) + gg_val(t, v)
    off, blobs = 0, []
    for i, (name, ty, ne) in enumerate(tensors):
        blk, size = GG_TYPES[ty]
        rows = 1
        for d in ne[1:]:
            rows *= d
        nbytes = ne[0] // blk * size * rows
        h += gg_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        h += struct.pack("<IQ", ty, off if bad_offset != i else off + 1)
        blobs.append(bytes((off + j) % 61 for j in range(nbytes)))
        off += nbytes + (-nbytes % align)
    h += b"\0" * (-len(h) % align)
    data = b"".join(b + b"\0" * (-len(b) % align) for b in blobs)
    return h + data


def llama_kvs(arch="llama", extra=()):
    return [("general.architecture", "str", arch), (f"{arch}.block_count", "u32", 1), (f"{arch}.context_length", "u32", 64),
            (f"{arch}.embedding_length", "u32", 32), (f"{arch}.feed_forward_length", "u32", 32),
            (f"{arch}.attention.head_count", "u32", 2), (f"{arch}.attention.head_count_kv", "u32", 1),
            (f"{arch}.rope.freq_base", "f32", 10000.0), (f"{arch}.attention.layer_norm_rms_epsilon", "f32", 1e-5),
            ("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.tokens", "arr:str", ["a", "b", "c"]),
            ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2)] + list(extra)


def llama_tensors(ty=8, experts=0):
    t = [("token_embd.weight", ty, [32, 16]), ("output_norm.weight", 0, [32]), ("output.weight", ty, [32, 16]),
         ("blk.0.attn_norm.weight", 0, [32]), ("blk.0.ffn_norm.weight", 0, [32]),
         ("blk.0.attn_q.weight", ty, [32, 32]), ("blk.0.attn_k.weight", ty, [32, 16]),
         ("blk.0.attn_v.weight", ty, [32, 16]), ("blk.0.attn_output.weight", ty, [32, 32])]
    if experts:
        t += [("blk.0.ffn_gate_inp.weight", 0, [32, experts]), ("blk.0.ffn_gate_exps.weight", ty, [32, 32, experts]),
              ("blk.0.ffn_up_exps.weight", ty, [32, 32, experts]), ("blk.0.ffn_down_exps.weight", ty, [32, 32, experts])]
    else:
        t += [("blk.0.ffn_gate.weight", ty, [32, 32]), ("blk.0.ffn_up.weight", ty, [32, 32]), ("blk.0.ffn_down.weight", ty, [32, 32])]
    return t


def gguf_corpus():
    put("gguf", "llama_q8_0", gguf_image(llama_kvs(), llama_tensors(8)))
    put("gguf", "llama_f16_mxfp4", gguf_image(llama_kvs(), llama_tensors(1)[:5] + [(n, 39, ne) for n, _, ne in llama_tensors(1)[5:]]))
    put("gguf", "mixtral_q4_0", gguf_image(llama_kvs(extra=[("llama.expert_count", "u32", 4), ("llama.expert_used_count", "u32", 2)]),
                                           llama_tensors(2, experts=4)))
    q3 = [(k.replace("llama.", "qwen3moe."), t, v) for k, t, v in llama_kvs("qwen3moe")]
    q3 += [("qwen3moe.expert_count", "u32", 4), ("qwen3moe.expert_used_count", "u32", 2),
           ("qwen3moe.expert_feed_forward_length", "u32", 32), ("qwen3moe.attention.key_length", "u32", 16),
           ("qwen3moe.attention.value_length", "u32", 16)]
    put("gguf", "qwen3moe_q5", gguf_image(q3, llama_tensors(6, experts=4) + [("blk.0.attn_q_norm.weight", 0, [16]),
                                                                             ("blk.0.attn_k_norm.weight", 0, [16])]))
    put("gguf", "kquants", gguf_image(llama_kvs(extra=[("general.alignment", "u32", 64)]),
                                      [("a", 12, [256, 2]), ("b", 13, [256, 1]), ("c", 14, [512, 1, 2])], align=64))
    put("gguf", "all_value_types", gguf_image(
        [("u8", "u8", 1), ("i8", "i8", -1), ("u16", "u16", 2), ("i16", "i16", -2), ("u32", "u32", 3), ("i32", "i32", -3),
         ("f32", "f32", 1.5), ("bool", "bool", 1), ("str", "str", "x"), ("u64", "u64", 1 << 40), ("i64", "i64", -(1 << 40)),
         ("f64", "f64", 2.5), ("a.u32", "arr:u32", [1, 2, 3]), ("a.f32", "arr:f32", [0.5]), ("a.str", "arr:str", ["p", "q"]),
         ("general.architecture", "str", "qwen2")], [("t", 30, [4, 2])]))
    ds = [(k.replace("llama.", "deepseek2."), t, v) for k, t, v in llama_kvs("deepseek2")]
    ds += [("deepseek2.expert_count", "u32", 4), ("deepseek2.expert_used_count", "u32", 2),
           ("deepseek2.attention.kv_lora_rank", "u32", 32), ("deepseek2.rope.dimension_count", "u32", 8),
           ("deepseek2.attention.key_length", "u32", 24), ("deepseek2.attention.value_length", "u32", 16),
           ("deepseek2.expert_feed_forward_length", "u32", 32), ("deepseek2.expert_gating_func", "u32", 2),
           ("deepseek2.rope.scaling.type", "str", "yarn"), ("deepseek2.rope.scaling.factor", "f32", 4.0),
           ("deepseek2.rope.scaling.original_context_length", "u32", 16)]
    put("gguf", "deepseek2_meta", gguf_image(ds, [("token_embd.weight", 0, [32, 16])]))
    put("gguf", "near_offset", gguf_image(llama_kvs(), llama_tensors(8), bad_offset=3))
    put("gguf", "near_version", gguf_image(llama_kvs(), llama_tensors(8), version=1))
    put("gguf", "near_truncated", gguf_image(llama_kvs(), llama_tensors(8))[:-5])
    put("gguf", "near_blocks", gguf_image(llama_kvs(), [("x", 12, [200, 1])]))



# ---- tokenizer: normalizer and decoder chains that grow (fuzz_tokenizer modes 4 and 0) ----
# Mode 4 reads its input as a program (tools/fuzz/fuzz_tokenizer.c, growth_chains): the count of
# normalizers and of decoders, each step as a kind byte and its arguments, then the text as one piece
# of BITS per byte. chain() writes that program from a readable description.
BITS = ["a", "b", "aa", " ", "\u2581", "\u00e9", "\u4e2d", "\n", "<0x61>", "ab"]
RE = ["a", "a+", "a(?=[^b]*b)", "(?<=a)", "\\s", "$", "."]


def _bits(pieces, most):
    assert len(pieces) <= most
    return [len(pieces)] + [BITS.index(x) for x in pieces]


def _replace(step):
    _, pat, content = step
    if isinstance(pat, int):      # a regex: index into RE
        return [1, pat] + _bits(content, 15)
    return [0] + _bits(pat, 2) + _bits(content, 15)


def chain(norms, decs, text):
    """norms: ("Replace", [pieces] or regex index, [pieces]), ("Prepend", [pieces]), ("NFKC",),
    ("Lowercase",), ("Strip",); decs: ("Replace", ...), ("Strip",), ("Fuse",), ("ByteFallback",),
    ("Metaspace",); text: pieces."""
    out = [4, len(norms), len(decs)]
    for n in norms:
        k = n[0]
        if k == "Replace": out += [0] + _replace(n)
        elif k == "Prepend": out += [2] + _bits(n[1], 15)
        elif k == "NFKC": out += [3]
        else: out += [4, 1 if k == "Lowercase" else 0]
    for d in decs:
        k = d[0]
        if k == "Replace": out += [0] + _replace(d)
        elif k == "Strip": out += [2]
        elif k in ("Fuse", "ByteFallback"): out += [3, 1 if k == "Fuse" else 0]
        else: out += [4]
    assert len(text) <= 128
    out += [BITS.index(x) for x in text]
    return bytes(out)


def tok_json(normalizer=None, decoder=None, pre=None):
    model = {"type": "BPE", "unk_token": "?", "vocab": {"?": 0, "a": 1, "b": 2, " ": 3, "aa": 4}, "merges": ["a a"]}
    return b"\x00" + json.dumps({"version": "1.0", "added_tokens": [], "pre_tokenizer": pre, "model": model,
                                 "normalizer": normalizer, "decoder": decoder}).encode()


def tokenizer_corpus():
    a8 = ["a"] * 8
    grow = ("Replace", ["a"], a8)                               # every "a" becomes eight
    put("tokenizer", "chain_norm_growth", chain([grow] * 12, [], ["a"] * 64))
    put("tokenizer", "chain_dec_growth", chain([], [grow] * 12, ["a"] * 64))
    put("tokenizer", "chain_regex_rescan", chain([("Replace", 2, ["b"])], [], ["a"] * 128) + b"\x00" * 2872)
    put("tokenizer", "chain_benign", chain([("Prepend", ["\u2581", "\u2581"]), ("NFKC",), ("Lowercase",)],
                                           [("Metaspace",), ("Fuse",)], (BITS * 13)[:128]) + bytes(i % 10 for i in range(128, 200)))
    # Prepend adds to the front, Replace multiplies what was added: a chain that grows from almost nothing
    put("tokenizer", "chain_prepend_replace",
        chain([("Prepend", ["aa"] * 15), ("Replace", ["a"], ["a"] * 15)] * 8, [], ["b"] * 4))
    # a regex Replace that multiplies every character, then literal steps
    put("tokenizer", "chain_regex_growth", chain([("Replace", 6, ["aa"] * 8)] * 4 + [grow] * 4, [], ["b", "a", " "] * 10))
    # growth that stays within the budget (x128 per byte): must succeed
    put("tokenizer", "chain_growth_within_budget", chain([("Replace", ["a"], ["a", "a"])] * 7, [("Replace", ["b"], ["b", "b"])] * 7,
                                                          ["a", "b"] * 32))
    # decoders that grow on Metaspace's prefix and on byte tokens, with a normalizer that adds some
    put("tokenizer", "chain_dec_metaspace", chain([("Prepend", ["\u2581"] * 4)],
                                                  [("Metaspace",), ("Replace", ["\u2581"], ["\u2581"] * 15)] * 5 + [("ByteFallback",), ("Fuse",)],
                                                  ["\u2581", "a", "<0x61>", " "] * 16))
    # both chains at once, each just inside and then just past the budget
    put("tokenizer", "chain_both_growth", chain([("Replace", ["a"], ["a"] * 4)] * 6, [("Replace", ["a"], ["a"] * 4)] * 6, ["a"] * 32))
    put("tokenizer", "chain_empty_text", chain([("Prepend", ["aa"] * 15)] * 16, [grow] * 16, []))
    rep = lambda content: {"type": "Replace", "pattern": {"String": "a"}, "content": content}
    put("tokenizer", "json_norm_growth", tok_json(normalizer={"type": "Sequence", "normalizers": [rep("aa")] * 20}))
    put("tokenizer", "json_dec_growth", tok_json(decoder={"type": "Sequence", "decoders": [rep("aaaa")] * 12}))
    put("tokenizer", "json_regex_rescan", tok_json(pre={"type": "Split", "pattern": {"Regex": "a(?=[^b]*b)|a|\\s+(?!\\S)"},
                                                        "behavior": "Isolated", "invert": False}))
    put("tokenizer", "json_prepend_growth", tok_json(normalizer={"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "a" * 64}, rep("aaaaaaaa")] * 6}))

if __name__ == "__main__":
    main()
    gguf_corpus()
    tokenizer_corpus()
