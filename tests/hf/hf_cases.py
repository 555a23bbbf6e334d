"""Tiny random Hugging Face models for every architecture moe loads, built with transformers' own
model classes (the reference), saved with save_pretrained, plus the reference logits and routing.

Each case is (name, model_type, config overrides, weight dtype, sequence length). Parameters are
re-drawn with a larger spread than HF's init (std 0.02 would make routing nearly uniform and hide
routing bugs behind near-ties)."""
import json
import math
import os

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8}
DS_MLA = dict(q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=6, v_head_dim=10)


def C(**kw):
    d = dict(BASE)
    d.update(kw)
    return d


CASES = [
    # name, model_type, config, dtype, seq
    ("mixtral_e8k2", "mixtral", C(num_local_experts=8, num_experts_per_tok=2), "f32", 19),
    ("mixtral_e1k1", "mixtral", C(num_local_experts=1, num_experts_per_tok=1, num_key_value_heads=4), "f32", 7),
    ("mixtral_odd", "mixtral", C(hidden_size=36, num_attention_heads=3, num_key_value_heads=1,
                                  intermediate_size=29, num_local_experts=5, num_experts_per_tok=3,
                                  num_hidden_layers=3, rope_theta=1e4), "f32", 23),
    ("mixtral_sliding", "mixtral", C(num_local_experts=4, num_experts_per_tok=2, sliding_window=5), "f32", 17),
    ("mixtral_bf16", "mixtral", C(num_local_experts=8, num_experts_per_tok=2), "bf16", 16),
    ("mixtral_f16", "mixtral", C(num_local_experts=6, num_experts_per_tok=2), "f16", 12),
    ("qwen2_moe_shared", "qwen2_moe", C(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=20,
                                        shared_expert_intermediate_size=36, norm_topk_prob=False), "f32", 21),
    ("qwen2_moe_sparse", "qwen2_moe", C(num_experts=64, num_experts_per_tok=8, moe_intermediate_size=12,
                                        shared_expert_intermediate_size=24, norm_topk_prob=True,
                                        decoder_sparse_step=2, mlp_only_layers=[3], num_hidden_layers=4), "f32", 18),
    ("qwen2_moe_bf16", "qwen2_moe", C(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                                      shared_expert_intermediate_size=32), "bf16", 14),
    ("qwen3_moe_e16k4", "qwen3_moe", C(num_experts=16, num_experts_per_tok=4, moe_intermediate_size=16,
                                       norm_topk_prob=True, head_dim=16), "f32", 20),
    ("qwen3_moe_e7k1_tied", "qwen3_moe", C(num_experts=7, num_experts_per_tok=1, moe_intermediate_size=20,
                                           tie_word_embeddings=True, num_key_value_heads=1), "f32", 13),
    ("qwen3_moe_e64k8", "qwen3_moe", C(num_experts=64, num_experts_per_tok=8, moe_intermediate_size=8,
                                       norm_topk_prob=False, attention_bias=True, decoder_sparse_step=1,
                                       mlp_only_layers=[0]), "f32", 25),
    ("qwen3_moe_bf16", "qwen3_moe", C(num_experts=32, num_experts_per_tok=6, moe_intermediate_size=12,
                                      norm_topk_prob=True), "bf16", 16),
    ("olmoe_e8k2", "olmoe", C(num_experts=8, num_experts_per_tok=2, num_key_value_heads=4), "f32", 17),
    ("olmoe_e64k8_clip", "olmoe", C(num_experts=64, num_experts_per_tok=8, intermediate_size=8, clip_qkv=0.7,
                                    attention_bias=True, norm_topk_prob=True), "f32", 22),
    ("olmoe_bf16", "olmoe", C(num_experts=16, num_experts_per_tok=4), "bf16", 12),
    ("deepseek_v2_greedy", "deepseek_v2", C(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=12,
                                            n_shared_experts=2, first_k_dense_replace=1, q_lora_rank=None,
                                            num_key_value_heads=4, topk_method="greedy", **{k: v for k, v in DS_MLA.items() if k != "q_lora_rank"}), "f32", 18),
    ("deepseek_v2_group", "deepseek_v2", C(n_routed_experts=16, num_experts_per_tok=3, moe_intermediate_size=8,
                                           n_shared_experts=1, first_k_dense_replace=0, topk_method="group_limited_greedy",
                                           n_group=4, topk_group=2, routed_scaling_factor=2.0, num_key_value_heads=4,
                                           attention_bias=True, rope_scaling=dict(YARN), **DS_MLA), "f32", 21),
    ("deepseek_v3_base", "deepseek_v3", C(n_routed_experts=16, num_experts_per_tok=4, moe_intermediate_size=12,
                                          n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2,
                                          routed_scaling_factor=2.5, norm_topk_prob=True, num_key_value_heads=4,
                                          num_hidden_layers=3, **DS_MLA), "f32", 20),
    ("deepseek_v3_yarn", "deepseek_v3", C(n_routed_experts=32, num_experts_per_tok=8, moe_intermediate_size=8,
                                          n_shared_experts=2, first_k_dense_replace=0, n_group=8, topk_group=3,
                                          routed_scaling_factor=1.5, norm_topk_prob=False, num_key_value_heads=4,
                                          rope_scaling=dict(YARN), rope_interleave=False, **DS_MLA), "f32", 24),
    ("deepseek_v3_bf16", "deepseek_v3", C(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=12,
                                          n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1,
                                          num_key_value_heads=4, **DS_MLA), "bf16", 15),
    ("dots1_e8k2", "dots1", C(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=12, n_shared_experts=1,
                              first_k_dense_replace=1, n_group=2, topk_group=1, routed_scaling_factor=2.0,
                              norm_topk_prob=True, head_dim=16, sliding_window=None), "f32", 17),
    ("dots1_sliding_nonorm", "dots1", C(n_routed_experts=16, num_experts_per_tok=4, moe_intermediate_size=8,
                                        n_shared_experts=2, first_k_dense_replace=0, n_group=4, topk_group=2,
                                        norm_topk_prob=False, num_hidden_layers=3, sliding_window=5,
                                        max_window_layers=1), "f32", 19),
    ("qwen3_moe_sharded", "qwen3_moe", C(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                                         num_hidden_layers=3), "f32", 9),
    ("qwen3_moe_long_chunked", "qwen3_moe", C(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8,
                                              hidden_size=32, max_position_embeddings=512), "f32", 300),
    ("mixtral_fused_v5", "mixtral", C(num_local_experts=4, num_experts_per_tok=2), "f32", 11),
    ("qwen3_moe_fused_v5_bf16", "qwen3_moe", C(num_experts=8, num_experts_per_tok=3, moe_intermediate_size=12), "bf16", 10),
    ("llama_gqa", "llama", C(num_key_value_heads=2), "f32", 19),
    ("llama3_rope_bias", "llama", C(attention_bias=True, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 32}), "f32", 30),
    ("llama_linear_rope_bf16", "llama", C(rope_scaling={"type": "linear", "factor": 2.0}), "bf16", 11),
    ("mistral_sliding", "mistral", C(sliding_window=6, head_dim=16), "f32", 20),
    ("qwen2_dense", "qwen2", C(num_key_value_heads=1, tie_word_embeddings=True), "f32", 16),
]

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
# transformers 5 runs experts through grouped products by default (which refuse odd widths); the
# reference is its plain per-expert loop
EAGER = {"attn_implementation": "eager", **({"experts_implementation": "eager"} if TRANSFORMERS_MAJOR >= 5 else {})}


def make_config(model_type, overrides):
    cfg = transformers.CONFIG_MAPPING[model_type](**overrides)
    cfg._attn_implementation = "eager"
    if TRANSFORMERS_MAJOR >= 5:
        cfg._experts_implementation = "eager"
    return cfg


@torch.no_grad()
def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        else:
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            std = 1.0 / math.sqrt(fan_in)
            if "gate.weight" in name or "router" in name:
                std *= 2.0  # decisive routing
            p.copy_(std * torch.randn(p.shape, generator=g))
    for name, b in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            b.copy_(0.05 * torch.randn(b.shape, generator=g))


class RouteCapture:
    """Records, per (layer, position), the experts HF's router chose and the scores it used."""

    def __init__(self, model, model_type, cfg):
        self.routes = {}
        self.handles = []
        for name, mod in model.named_modules():
            parts = name.split(".")
            if len(parts) < 4 or parts[0] != "model" or parts[1] != "layers" or parts[-1] != "gate":
                continue
            layer = int(parts[2])
            self.handles.append(mod.register_forward_hook(self._hook(layer, model_type, cfg)))

    def _hook(self, layer, model_type, cfg):
        def fn(mod, inputs, output):
            if model_type in ("deepseek_v2", "deepseek_v3", "dots1"):
                idx, w = output
                x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()
                logits = torch.nn.functional.linear(x, mod.weight.float())
                scores = logits.softmax(-1) if model_type == "deepseek_v2" else logits.sigmoid()
                idx, w = idx.reshape(-1, idx.shape[-1]), w.reshape(-1, w.shape[-1])
            else:
                logits = output.reshape(-1, output.shape[-1]).float()
                scores = torch.softmax(logits, dim=-1)
                w, idx = torch.topk(scores, cfg.num_experts_per_tok, dim=-1)
                if getattr(cfg, "norm_topk_prob", model_type == "mixtral") or model_type == "mixtral":
                    w = w / w.sum(-1, keepdim=True)
            start = len([k for k in self.routes if k[0] == layer])
            for t in range(idx.shape[0]):
                self.routes[(layer, start + t)] = (idx[t].tolist(), w[t].tolist(), scores[t].tolist())
        return fn


def active_params(model, cfg, model_type):
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for name, mod in model.named_modules():
        if hasattr(mod, "experts") and isinstance(mod.experts, torch.nn.ModuleList):
            per = sum(p.numel() for p in mod.experts[0].parameters())
            k = cfg.num_experts_per_tok
            inactive += per * (len(mod.experts) - k)
    return total, total - inactive


def fuse_experts_like_v5(out_dir):
    """Rewrite a saved checkpoint in the fused expert layout transformers 5 can write:
    mlp.experts.gate_up_proj [E][2I][H] (gate rows first) and mlp.experts.down_proj [E][H][I]
    (Mixtral's block_sparse_moe becomes mlp)."""
    import re
    from safetensors.torch import load_file, save_file
    path = os.path.join(out_dir, "model.safetensors")
    sd = load_file(path)
    out, experts = {}, {}
    pat = re.compile(r"model\.layers\.(\d+)\.(mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight")
    names = {"w1": "gate", "w3": "up", "w2": "down", "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
    for k, v in sd.items():
        m = pat.fullmatch(k)
        if m:
            experts.setdefault(int(m.group(1)), {})[(int(m.group(3)), names[m.group(4)])] = v
        else:
            out[k.replace("block_sparse_moe", "mlp")] = v
    for l, ex in experts.items():
        E = 1 + max(e for e, _ in ex)
        out[f"model.layers.{l}.mlp.experts.gate_up_proj"] = torch.stack([torch.cat([ex[(e, "gate")], ex[(e, "up")]]) for e in range(E)])
        out[f"model.layers.{l}.mlp.experts.down_proj"] = torch.stack([ex[(e, "down")] for e in range(E)])
    save_file(out, path, metadata={"format": "pt"})


def mla_mscale_v4_fix(model, cfg, model_type):
    """transformers 4.x leaves DeepSeek-V2's softmax scale at qk_head_dim^-0.5 with YaRN, while DeepSeek's
    reference code, vLLM, llama.cpp, transformers >= 5 (and its own V3) multiply it by
    mscale(factor, mscale_all_dim)^2; moe does the same for V2. Under 4.x the reference gets that factor
    here (tests/hf5 compares against 5.x's own V2 with nothing patched), so the rest of V2 is still
    checked against 4.x."""
    rs = getattr(cfg, "rope_scaling", None)
    if TRANSFORMERS_MAJOR >= 5 or model_type != "deepseek_v2" or not rs or not rs.get("mscale_all_dim"):
        return
    factor, mad = rs["factor"], rs["mscale_all_dim"]
    m = 1.0 if factor <= 1 else 0.1 * mad * math.log(factor) + 1.0
    for mod in model.modules():
        if type(mod).__name__ == "DeepseekV2Attention":
            mod.scaling = mod.scaling * m * m


def build_case(case, workdir, seed=1234, capture_routes=True):
    """Save the model to workdir/name and return (dir, tokens, ref logits [n][V], routes, info).
    capture_routes=False (transformers 5, whose routers return other tuples) gives routes = {}."""
    name, model_type, overrides, dtype, seq = case
    torch.manual_seed(seed)
    cfg = make_config(model_type, dict(overrides))
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    randomize(model, seed)
    out_dir = os.path.join(workdir, name)
    if dtype != "f32":
        model = model.to(DTYPES[dtype])
    # "sharded" cases exercise model.safetensors.index.json with several shard files
    shard = {"max_shard_size": "40KB"} if "sharded" in name else {}
    model.save_pretrained(out_dir, safe_serialization=True, **shard)
    # The reference is transformers loading the saved folder in float32: exactly the stored (rounded)
    # weights, with non-persistent buffers such as rotary frequencies computed afresh in float32.
    if dtype != "f32":
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, **EAGER).eval()
    if "fused" in name:
        fuse_experts_like_v5(out_dir)
    mla_mscale_v4_fix(model, cfg, model_type)
    rng = np.random.default_rng(seed + seq)
    tokens = rng.integers(0, cfg.vocab_size, size=seq).tolist()
    cap = RouteCapture(model, model_type, cfg) if capture_routes else None
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float().numpy()
    total, active = active_params(model, cfg, model_type)
    return out_dir, tokens, logits, cap.routes if cap else {}, {"params": total, "active_params": active}
