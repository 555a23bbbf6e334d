"""Tiny random models of the families that moe loads against transformers 5.x only (issue 10: gpt_oss,
glm4_moe, ernie4_5_moe, granitemoe, granitemoeshared, phimoe, minimax_m2), built with transformers'
own classes, saved with save_pretrained, plus the reference logits, routing and parameter counts.

A case is (name, model_type, config overrides, weight dtype, sequence length, options). Options:
  "fused": save the layout transformers 5 uses in memory (save_original_format=False: fused expert
           tensors, renamed routers) instead of the checkpoints' original names;
  "config": a function that rewrites the saved config.json dict, to give it the spelling of the
           checkpoints on the Hub (4.x-style rope keys, legacy fields) - the reference is computed
           from the model as built, so the rewrite must not change what the config means;
  "mxfp4": (gpt_oss) store the experts as the released checkpoints do, *_blocks U8 + *_scales U8
           (E8M0) rows [E][out][in], quantized with the gguf package's MXFP4 quantizer; the reference
           model's experts are set to the dequantized values.
Parameters are redrawn with a larger spread than the classes' init (see tests/hf/hf_cases.py)."""
import json
import math
import os

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=40, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

# How each family's router module scores experts (for the routes' "scores" the test compares).
SIGMOID_SCORES = {"glm4_moe", "minimax_m2"}


def C(**kw):
    d = dict(BASE)
    d.update(kw)
    return d


def make_config(model_type, overrides):
    cfg = transformers.CONFIG_MAPPING[model_type](**overrides)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"
    return cfg


@torch.no_grad()
def randomize(model, model_type, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or "layernorm.weight" in name or name.endswith(("q_norm.weight", "k_norm.weight")):
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        elif name.endswith("sinks"):
            p.copy_(torch.randn(p.shape, generator=g))
        else:
            # gpt-oss keeps its experts transposed ([E][in][out]); the others [E][out][in] or [out][in]
            transposed = model_type == "gpt_oss" and ".experts." in name
            fan_in = p.shape[-2] if transposed else p.shape[-1] if p.dim() > 1 else 1
            std = 1.0 / math.sqrt(fan_in)
            if name.endswith(("gate.weight", "router.weight")):
                std *= 2.0  # decisive routing
            p.copy_(std * torch.randn(p.shape, generator=g))
    for name, b in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            b.copy_(0.05 * torch.randn(b.shape, generator=g))


class RouteCapture:
    """Per (layer, position): the experts and weights transformers' router returned, and its scores
    (softmax or sigmoid of the router logits, which is what moe reports)."""

    def __init__(self, model, model_type):
        self.routes = {}
        self.handles = []
        for name, mod in model.named_modules():
            parts = name.split(".")
            if len(parts) < 5 or parts[:2] != ["model", "layers"] or parts[-1] not in ("gate", "router"):
                continue
            if not hasattr(mod, "weight"):
                continue
            self.handles.append(mod.register_forward_hook(self._hook(int(parts[2]), model_type)))

    def _hook(self, layer, model_type):
        def fn(mod, inputs, output):
            logits, w, idx = output
            logits = logits.reshape(-1, logits.shape[-1]).float()
            scores = logits.sigmoid() if model_type in SIGMOID_SCORES else logits.softmax(-1)
            idx, w = idx.reshape(-1, idx.shape[-1]), w.reshape(-1, w.shape[-1]).float()
            start = len([k for k in self.routes if k[0] == layer])
            for t in range(idx.shape[0]):
                self.routes[(layer, start + t)] = (idx[t].tolist(), w[t].tolist(), scores[t].tolist())
        return fn


def param_counts(model, cfg, model_type):
    """Total parameters, and those a token uses: of each layer's routed experts only the k chosen."""
    total = sum(p.numel() for p in model.parameters())
    k = 2 if model_type == "phimoe" else cfg.num_experts_per_tok
    inactive = 0
    for name, mod in model.named_modules():
        if name.endswith(".experts") and not isinstance(mod, torch.nn.ModuleList):
            ps = list(mod.parameters(recurse=False))
            E = ps[0].shape[0]
            per = sum(p.numel() for p in ps) // E
            inactive += per * (E - k)
    return total, total - inactive


def mxfp4_split(w):
    """W [.., rows, cols] f32 -> (blocks U8 [.., rows, G, 16], scales U8 [.., rows, G], dequantized)"""
    import gguf
    arr = w.numpy().astype(np.float32)
    data = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.MXFP4)   # [.., rows, G * 17], ggml's blocks
    deq = gguf.quants.dequantize(data, gguf.GGMLQuantizationType.MXFP4).reshape(arr.shape)
    blk = data.reshape(*arr.shape[:-1], -1, 17)
    scales, nib = blk[..., 0], blk[..., 1:]
    q = np.concatenate([nib & 15, nib >> 4], axis=-1)                   # [.., G, 32] codes in element order
    blocks = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)      # gpt-oss: element 2i low nibble
    return (torch.from_numpy(np.ascontiguousarray(blocks)), torch.from_numpy(np.ascontiguousarray(scales)),
            torch.from_numpy(deq))


@torch.no_grad()
def mxfp4_experts(model, out_dir):
    """Rewrite the saved gpt-oss experts as MXFP4 pairs (rows = outputs, as the Hub's files and
    transformers' Mxfp4 loader have them) and give the model the dequantized values."""
    from safetensors.torch import load_file, save_file
    path = os.path.join(out_dir, "model.safetensors")
    sd, out = load_file(path), {}
    params = dict(model.named_parameters())
    for k, v in sd.items():
        if k.endswith(("experts.gate_up_proj", "experts.down_proj")):
            b, s, deq = mxfp4_split(v.float().transpose(1, 2).contiguous())   # [E][in][out] -> rows [E][out][in]
            out[k + "_blocks"], out[k + "_scales"] = b, s
            params[k].copy_(deq.transpose(1, 2))
        else:
            out[k] = v
    save_file(out, path, metadata={"format": "pt"})
    cpath = os.path.join(out_dir, "config.json")
    c = json.load(open(cpath))
    c["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    json.dump(c, open(cpath, "w"), indent=2)


def build_case(case, workdir, seed=1234):
    """Save the model to workdir/name; return (dir, tokens, ref logits [n][V], routes, info)."""
    name, model_type, overrides, dtype, seq, opts = case
    torch.manual_seed(seed)
    cfg = make_config(model_type, dict(overrides))
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    randomize(model, model_type, seed)
    out_dir = os.path.join(workdir, name)
    if dtype != "f32":
        model = model.to(DTYPES[dtype])
    model.save_pretrained(out_dir, save_original_format=not opts.get("fused", False))
    if opts.get("mxfp4"):
        mxfp4_experts(model, out_dir)
    # The reference: transformers loading the saved folder in float32 (the stored, rounded weights)
    if dtype != "f32":
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager",
                                                     experts_implementation="eager").eval()
    if "config" in opts:
        path = os.path.join(out_dir, "config.json")
        c = json.load(open(path))
        c = opts["config"](c)
        json.dump(c, open(path, "w"), indent=2)
    rng = np.random.default_rng(seed + seq)
    tokens = rng.integers(0, cfg.vocab_size, size=seq).tolist()
    cap = RouteCapture(model, model_type)
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float().numpy()
    total, active = param_counts(model, cfg, model_type)
    return out_dir, tokens, logits, cap.routes, {"params": total, "active_params": active}


def rope_as_4x(c, keep=()):
    """Rewrite 5.x's rope_parameters as the Hub's 4.x configs spell them: rope_theta at the top, the
    scaling (if any) in rope_scaling, other keys of the dictionary (partial_rotary_factor) at the top."""
    rp = c.pop("rope_parameters", None) or {}
    c["rope_theta"] = rp.pop("rope_theta")
    for k in ("partial_rotary_factor",) + tuple(keep):
        if k in rp:
            c[k] = rp.pop(k)
    c["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    return c
