"""Write a large random-weight qwen3_moe folder (config.json + one model.safetensors) for the offload
benchmark, streaming one tensor at a time so that a model larger than memory can be written.

Weights are normal with std 1/sqrt(fan_in) (router 2/sqrt(d), norms 1), stored as BF16 (round to
nearest even, like torch) or F32. Tensor order: non-expert tensors, then experts by (layer, expert) with
gate, up, down back to back, as `moe quantize` writes them (HF's save_pretrained sorts by name, which
also keeps each expert contiguous)."""
import argparse
import json
import os
import struct

import numpy as np


def to_bf16(x):
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--moe-ff", type=int, default=768)
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": a.hidden,
           "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
           "head_dim": a.head_dim, "vocab_size": a.vocab, "num_experts": a.experts, "num_experts_per_tok": a.top_k,
           "moe_intermediate_size": a.moe_ff, "intermediate_size": a.moe_ff, "norm_topk_prob": True,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
           "decoder_sparse_step": 1, "mlp_only_layers": [], "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32"}
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    d, qd, kvd = a.hidden, a.heads * a.head_dim, a.kv_heads * a.head_dim
    T = [("model.embed_tokens.weight", (a.vocab, d))]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        T += [(p + "input_layernorm.weight", (d,)), (p + "post_attention_layernorm.weight", (d,)),
              (p + "self_attn.q_proj.weight", (qd, d)), (p + "self_attn.k_proj.weight", (kvd, d)),
              (p + "self_attn.v_proj.weight", (kvd, d)), (p + "self_attn.o_proj.weight", (d, qd)),
              (p + "self_attn.q_norm.weight", (a.head_dim,)), (p + "self_attn.k_norm.weight", (a.head_dim,)),
              (p + "mlp.gate.weight", (a.experts, d))]
    T += [("model.norm.weight", (d,)), ("lm_head.weight", (a.vocab, d))]
    for l in range(a.layers):
        for e in range(a.experts):
            p = f"model.layers.{l}.mlp.experts.{e}."
            T += [(p + "gate_proj.weight", (a.moe_ff, d)), (p + "up_proj.weight", (a.moe_ff, d)),
                  (p + "down_proj.weight", (d, a.moe_ff))]
    esz = 2 if a.dtype == "bf16" else 4
    hdr, off = {}, 0
    for name, shape in T:
        n = int(np.prod(shape)) * esz
        hdr[name] = {"dtype": "BF16" if esz == 2 else "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    rng = np.random.default_rng(a.seed)
    path = os.path.join(a.out, "model.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for i, (name, shape) in enumerate(T):
            if name.endswith("norm.weight"):
                x = 1.0 + 0.2 * rng.standard_normal(shape, dtype=np.float32)
            else:
                std = 1.0 / np.sqrt(shape[-1]) * (2.0 if name.endswith("mlp.gate.weight") else 1.0)
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            (to_bf16(x) if esz == 2 else x.astype(np.float32)).tofile(f)
            if i % 200 == 0:
                print(f"\r{i}/{len(T)} tensors", end="", flush=True)
    os.replace(path + ".tmp", path)
    print(f"\nwrote {path}: {off / 2**30:.2f} GiB of tensors")


if __name__ == "__main__":
    main()
