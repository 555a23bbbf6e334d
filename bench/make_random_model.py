"""Write a Hugging Face model folder (config.json + model.safetensors) with random weights, quickly and
without torch: numpy draws the weights and the safetensors file is written directly, so a 4 GB
model needs little more than 4 GB of disk and a few hundred MB of memory.

Presets:
  tiny        qwen3_moe, 2 layers, 8 experts (demo)
  mixtral2g   mixtral-like: 8 experts, top-2, about 2 GB in bf16
  mixtral400m mixtral-like, smaller: 8 layers of 8 experts, top-2, about 0.4 GB in bf16 (serving load test)
  qwen3_4g    Qwen3-30B-A3B-like: 128 fine-grained experts, top-8, about 4 GB in bf16

Weights are N(0, 1/fan_in) so activations keep unit scale through the layers; norms are 1.
usage: make_random_model.py PRESET OUT_DIR [--dtype bf16|f32] [--seed S]"""
import argparse
import json
import os
import struct

import numpy as np

PRESETS = {
    "tiny": dict(model_type="qwen3_moe", vocab_size=512, hidden_size=128, intermediate_size=256,
                 moe_intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=32, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True),
    "mixtral2g": dict(model_type="mixtral", vocab_size=32000, hidden_size=1024, intermediate_size=3584,
                      num_hidden_layers=11, num_attention_heads=16, num_key_value_heads=4,
                      num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6),
    "mixtral400m": dict(model_type="mixtral", vocab_size=32000, hidden_size=512, intermediate_size=1792,
                        num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                        num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6),
    "qwen3_4g": dict(model_type="qwen3_moe", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                     moe_intermediate_size=384, num_hidden_layers=12, num_attention_heads=16,
                     num_key_value_heads=2, head_dim=64, num_experts=128, num_experts_per_tok=8,
                     norm_topk_prob=True),
}
COMMON = dict(max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1e6, hidden_act="silu",
              tie_word_embeddings=False, torch_dtype="bfloat16")


def tensors(cfg):
    """(name, shape, kind) for every tensor of the architecture; kind is 'w' (matrix) or 'norm'."""
    d, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", d // H)
    mt = cfg["model_type"]
    out = [("model.embed_tokens.weight", (V, d), "w")]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", (d,), "norm"), (p + "post_attention_layernorm.weight", (d,), "norm"),
                (p + "self_attn.q_proj.weight", (H * hd, d), "w"), (p + "self_attn.k_proj.weight", (KV * hd, d), "w"),
                (p + "self_attn.v_proj.weight", (KV * hd, d), "w"), (p + "self_attn.o_proj.weight", (d, H * hd), "w")]
        if mt == "qwen3_moe":
            out += [(p + "self_attn.q_norm.weight", (hd,), "norm"), (p + "self_attn.k_norm.weight", (hd,), "norm")]
            E, ff, blk, names = cfg["num_experts"], cfg["moe_intermediate_size"], "mlp", ("gate_proj", "up_proj", "down_proj")
        else:
            E, ff, blk, names = cfg["num_local_experts"], cfg["intermediate_size"], "block_sparse_moe", ("w1", "w3", "w2")
        out.append((p + f"{blk}.gate.weight", (E, d), "w"))
        for e in range(E):
            q = p + f"{blk}.experts.{e}."
            out += [(q + names[0] + ".weight", (ff, d), "w"), (q + names[1] + ".weight", (ff, d), "w"),
                    (q + names[2] + ".weight", (d, ff), "w")]
    out += [("model.norm.weight", (d,), "norm"), ("lm_head.weight", (V, d), "w")]
    return out


def to_bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    u = u + 0x7FFF + ((u >> 16) & 1)  # round to nearest even
    return (u >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", help="folder with tokenizer.json (+ tokenizer_config.json) to copy; sets vocab_size")
    a = ap.parse_args()
    cfg = dict(COMMON)
    cfg.update(PRESETS[a.preset])
    if a.tokenizer:
        import shutil
        os.makedirs(a.out, exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(a.tokenizer, f)):
                shutil.copy(os.path.join(a.tokenizer, f), os.path.join(a.out, f))
        tj = json.load(open(os.path.join(a.tokenizer, "tokenizer.json")))
        n = max(list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])]) + 1
        cfg["vocab_size"] = (n + 63) // 64 * 64
    cfg["torch_dtype"] = "bfloat16" if a.dtype == "bf16" else "float32"
    os.makedirs(a.out, exist_ok=True)
    specs = tensors(cfg)
    esz = 2 if a.dtype == "bf16" else 4
    header, off = {}, 0
    for name, shape, _ in specs:
        n = int(np.prod(shape)) * esz
        header[name] = {"dtype": "BF16" if a.dtype == "bf16" else "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    rng = np.random.default_rng(a.seed)
    tmp = os.path.join(a.out, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, shape, kind in specs:
            if kind == "norm":
                x = np.ones(shape, np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[-1]))
            f.write((to_bf16(x) if a.dtype == "bf16" else x).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(a.out, "model.safetensors"))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"{a.out}: {cfg['model_type']} {len(specs)} tensors, {off / 1e9:.2f} GB of weights")


if __name__ == "__main__":
    main()
