"""gguf_case.py - GGUF files from tiny random transformers models, the way llama.cpp's
convert_hf_to_gguf.py writes them, for tests/hf/test_gguf.py.

The writer is the gguf package's GGUFWriter and its tensor name map (llama.cpp's own Python code);
what the converter does per architecture is repeated here: the metadata keys it writes, Llama's
permutation of the q/k rows (and biases) for ggml's adjacent-pair RoPE, Llama 3's rope_freqs tensor,
experts stacked per projection, DeepSeek's MLA as one key/value head. Tensors are quantized with
the gguf package's quantizer where it has one (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, MXFP4, BF16) and with
the simple numpy K-quant writers below otherwise (the package only dequantizes K-quants); what
defines the reference is the package's numpy dequantizer applied to the bytes written."""
import math
import os

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q

import hf_cases

QK_K = 256


# ---- K-quant writers (round to nearest; llama.cpp searches harder, the format is the same) ----------

def _f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def _round(x):
    return np.floor(np.abs(x) + 0.5) * np.sign(x)


def _k_scales(sub, levels):
    """sub [nb, 8, 32] -> d, dmin (f16 as f32), sc, m [nb, 8] codes, q [nb, 8, 32] levels"""
    mn = np.minimum(sub.min(-1), 0)
    step = (sub.max(-1) - mn) / (levels - 1)
    d = _f16(step.max(-1) / 63).astype(np.float32)
    dmin = _f16((-mn).max(-1) / 63).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.clip(_round(step / d[:, None]), 0, 63), 0).astype(np.int64)
        m = np.where(dmin[:, None] > 0, np.clip(_round(-mn / dmin[:, None]), 0, 63), 0).astype(np.int64)
        dl = (d[:, None] * sc.astype(np.float32))[..., None]
        ml = (dmin[:, None] * m.astype(np.float32))[..., None]
        q = np.where(dl > 0, np.clip(_round((sub + ml) / dl), 0, levels - 1), 0).astype(np.int64)
    return d, dmin, sc, m, q


def _pack_scales(sc, m):
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    for s in range(4):
        out[:, s] = (sc[:, s] & 63) | ((sc[:, s + 4] >> 4) << 6)
        out[:, s + 4] = (m[:, s] & 63) | ((m[:, s + 4] >> 4) << 6)
        out[:, s + 8] = (sc[:, s + 4] & 15) | ((m[:, s + 4] & 15) << 4)
    return out


def quant_q4_k(x):
    nb = x.size // QK_K
    d, dmin, sc, m, q = _k_scales(x.reshape(nb, 8, 32).astype(np.float32), 16)
    qs = np.zeros((nb, 4, 32), dtype=np.uint8)
    for k in range(4):
        qs[:, k] = q[:, 2 * k] | (q[:, 2 * k + 1] << 4)
    return np.concatenate([_f16(d).view(np.uint8).reshape(nb, 2), _f16(dmin).view(np.uint8).reshape(nb, 2),
                           _pack_scales(sc, m), qs.reshape(nb, 128)], axis=1)


def quant_q5_k(x):
    nb = x.size // QK_K
    d, dmin, sc, m, q = _k_scales(x.reshape(nb, 8, 32).astype(np.float32), 32)
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for s in range(8):
        qh |= (((q[:, s] >> 4) & 1) << s).astype(np.uint8)
    qs = np.zeros((nb, 4, 32), dtype=np.uint8)
    for k in range(4):
        qs[:, k] = (q[:, 2 * k] & 15) | ((q[:, 2 * k + 1] & 15) << 4)
    return np.concatenate([_f16(d).view(np.uint8).reshape(nb, 2), _f16(dmin).view(np.uint8).reshape(nb, 2),
                           _pack_scales(sc, m), qh, qs.reshape(nb, 128)], axis=1)


def quant_q6_k(x):
    nb = x.size // QK_K
    sub = x.reshape(nb, 16, 16).astype(np.float32)
    step = np.abs(sub).max(-1) / 31
    d = _f16(step.max(-1) / 127).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d[:, None] > 0, np.clip(_round(step / d[:, None]), -128, 127), 0).astype(np.int64)
        dl = (d[:, None] * sc.astype(np.float32))[..., None]
        q = (np.where(dl != 0, np.clip(_round(sub / dl), -32, 31), 0) + 32).astype(np.int64).reshape(nb, 256)
    ql = np.zeros((nb, 128), dtype=np.uint8)
    qh = np.zeros((nb, 64), dtype=np.uint8)
    for e in range(256):
        h, r = divmod(e, 128)
        if r < 64:
            ql[:, 64 * h + r] |= (q[:, e] & 15).astype(np.uint8)
        else:
            ql[:, 64 * h + r - 64] |= ((q[:, e] & 15) << 4).astype(np.uint8)
        qh[:, 32 * h + r % 32] |= (((q[:, e] >> 4) & 3) << (2 * (r // 32))).astype(np.uint8)
    return np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), _f16(d).view(np.uint8).reshape(nb, 2)], axis=1)


K_WRITERS = {Q.Q4_K: quant_q4_k, Q.Q5_K: quant_q5_k, Q.Q6_K: quant_q6_k}


def encode(arr, qtype):
    """float32 array (rows last) -> (data for GGUFWriter.add_tensor, raw_dtype, dequantized float32)"""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if qtype == Q.F32:
        return arr, None, arr
    if qtype == Q.F16:
        h = arr.astype(np.float16)
        return h, None, h.astype(np.float32)
    if qtype in K_WRITERS:
        rows = arr.reshape(-1, arr.shape[-1])
        data = K_WRITERS[qtype](rows).reshape(*arr.shape[:-1], -1)
    else:
        data = gguf.quants.quantize(arr, qtype)
    return data, qtype, gguf.quants.dequantize(data, qtype).reshape(arr.shape).astype(np.float32)


# ---- conversion -------------------------------------------------------------------------------------

ARCH = {"llama": gguf.MODEL_ARCH.LLAMA, "mixtral": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2,
        "qwen2_moe": gguf.MODEL_ARCH.QWEN2MOE, "qwen3_moe": gguf.MODEL_ARCH.QWEN3MOE, "qwen3": gguf.MODEL_ARCH.QWEN3,
        "olmoe": gguf.MODEL_ARCH.OLMOE, "deepseek_v2": gguf.MODEL_ARCH.DEEPSEEK2, "deepseek_v3": gguf.MODEL_ARCH.DEEPSEEK2}


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute: rows of q/k reordered for ggml's rope"""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head, n_head_kv):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def category(name):
    if "embed_tokens" in name:
        return "embd"
    if name == "lm_head.weight":
        return "out"
    if "norm" in name or name.endswith(".bias") or "e_score_correction" in name:
        return "f32"
    if name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight"):
        return "router"
    if "shared_expert_gate" in name:
        return "f32"
    if "shared_expert" in name:
        return "shexp"
    if ".experts." in name:
        return "exps"
    if "self_attn" in name:
        return "attn"
    return "ffn"


def convert(model, cfg, model_type, path, plan, legacy_experts=False, old_mla_keys=False):
    """Write `model` as GGUF to path with quantization plan {category: GGMLQuantizationType} (missing
    categories F32; routers and norms F32 as llama.cpp keeps them). Returns the state dict the file
    decodes to (HF names and layout) for the reference model."""
    arch = ARCH[model_type]
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    n_layers = cfg.num_hidden_layers
    tmap = gguf.get_tensor_name_map(arch, n_layers)
    w = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    # --- metadata (TextModel.set_gguf_parameters and the family's own) ---
    w.add_block_count(n_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(H)
    w.add_head_count_kv(1 if model_type.startswith("deepseek") else KV)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    n_exp = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None) or getattr(cfg, "n_routed_experts", None)
    if n_exp:
        w.add_expert_count(n_exp)
        w.add_expert_used_count(cfg.num_experts_per_tok)
    if getattr(cfg, "head_dim", None) and not model_type.startswith("deepseek") and model_type != "mixtral":
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    rs = getattr(cfg, "rope_scaling", None) or {}
    rtype = rs.get("rope_type", rs.get("type"))
    if rtype == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rs["factor"])
    elif rtype == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rs["factor"])
        w.add_rope_scaling_orig_ctx_len(rs["original_max_position_embeddings"])
        if rs.get("beta_fast"):
            w.add_rope_scaling_yarn_beta_fast(rs["beta_fast"])
        if rs.get("beta_slow"):
            w.add_rope_scaling_yarn_beta_slow(rs["beta_slow"])
    if model_type in ("llama", "mixtral"):
        w.add_vocab_size(cfg.vocab_size)
        w.add_rope_dimension_count(getattr(cfg, "head_dim", None) or cfg.hidden_size // H)
    if model_type in ("qwen2_moe", "qwen3_moe"):
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        if model_type == "qwen2_moe":
            w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)
    if model_type == "olmoe" and getattr(cfg, "clip_qkv", None):
        w.add_clamp_kqv(cfg.clip_qkv)
    if model_type.startswith("deepseek"):
        w.add_leading_dense_block_count(cfg.first_k_dense_replace)
        w.add_vocab_size(cfg.vocab_size)
        if cfg.q_lora_rank:
            w.add_q_lora_rank(cfg.q_lora_rank)
        w.add_kv_lora_rank(cfg.kv_lora_rank)
        if old_mla_keys:
            w.add_key_length(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
            w.add_value_length(cfg.v_head_dim)
        else:
            w.add_key_length(cfg.kv_lora_rank + cfg.qk_rope_head_dim)
            w.add_value_length(cfg.kv_lora_rank)
            w.add_key_length_mla(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
            w.add_value_length_mla(cfg.v_head_dim)
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        w.add_expert_shared_count(cfg.n_shared_experts)
        w.add_expert_weights_scale(float(cfg.routed_scaling_factor))
        if getattr(cfg, "norm_topk_prob", False):
            w.add_expert_weights_norm(True)
        if getattr(cfg, "n_group", None):
            w.add_expert_group_count(cfg.n_group)
            w.add_expert_group_used_count(cfg.topk_group)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if model_type == "deepseek_v3" else gguf.ExpertGatingFuncType.SOFTMAX)
        w.add_rope_dimension_count(cfg.qk_rope_head_dim)
        if rtype == "yarn" and rs.get("mscale_all_dim"):
            w.add_rope_scaling_yarn_log_mul(0.1 * rs["mscale_all_dim"])
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])
    if getattr(cfg, "bos_token_id", None) is not None:
        w.add_bos_token_id(cfg.bos_token_id)
    if getattr(cfg, "eos_token_id", None) is not None:
        w.add_eos_token_id(cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else cfg.eos_token_id[0])
    # --- tensors ---
    out = dict(sd)   # what the file decodes to, in HF layout
    tied = getattr(cfg, "tie_word_embeddings", False)
    experts = {}     # (layer, proj) -> {expert: name}
    for name in list(sd):
        if "rotary_emb" in name or (tied and name == "lm_head.weight"):
            out.pop(name, None)
            continue
        parts = name.split(".")
        if ".experts." in name and parts[-2] in ("w1", "w2", "w3", "gate_proj", "up_proj", "down_proj") and not legacy_experts:
            experts.setdefault((int(parts[2]), parts[3], parts[-2]), {})[int(parts[5])] = name
            continue
        _write(w, tmap, name, sd[name], plan, cfg, model_type, out, H, KV)
    for (layer, blk, proj), by_e in sorted(experts.items()):
        E = len(by_e)
        stacked = np.stack([sd[by_e[e]] for e in range(E)])
        hf = f"layers.{layer}.feed_forward.experts.{proj}.weight" if model_type == "mixtral" else f"model.layers.{layer}.mlp.experts.{proj}.weight"
        qt = plan.get("exps", Q.F32)
        data, raw, deq = encode(stacked, qt)
        w.add_tensor(tmap.get_name(hf, try_suffixes=(".weight", ".bias")), data, raw_dtype=raw)
        for e in range(E):
            out[by_e[e]] = deq[e]
    if model_type in ("llama",) and rtype == "llama3":
        base = float(getattr(cfg, "rope_theta", 10000.0))
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
        freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
        factor, lo, hi = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old = rs["original_max_position_embeddings"]
        lo_wl, hi_wl = old / lo, old / hi
        ff = []
        for f in freqs:
            wl = 2 * math.pi / f
            if wl < hi_wl:
                ff.append(1)
            elif wl > lo_wl:
                ff.append(factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                ff.append(1 / ((1 - s) / factor + s))
        w.add_tensor("rope_freqs.weight", np.array(ff, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def _write(w, tmap, name, arr, plan, cfg, model_type, out, H, KV):
    cat = category(name)
    qt = plan.get(cat, Q.F32) if cat != "f32" else Q.F32
    if cat == "router":
        qt = plan.get("router", Q.F32)
    a = arr
    perm = model_type in ("llama", "mixtral") and (name.endswith("q_proj.weight") or name.endswith("q_proj.bias") or
                                                   name.endswith("k_proj.weight") or name.endswith("k_proj.bias"))
    if perm:
        kv = H if "q_proj" in name else KV
        a = permute(arr, H, kv)
    hf = name.replace("e_score_correction_bias", "e_score_correction.bias")
    gname = tmap.get_name(hf, try_suffixes=(".weight", ".bias"))
    parts = name.split(".")
    if gname is None and ".experts." in name:   # early Mixtral conversions: one tensor per expert
        proj = {"w1": "gate", "w2": "down", "w3": "up"}[parts[-2]]
        gname = f"blk.{parts[2]}.ffn_{proj}.{parts[5]}.weight"
    if gname is None:
        raise ValueError(f"no GGUF name for {name}")
    if a.ndim == 1:
        qt = Q.F32
    data, raw, deq = encode(a, qt)
    w.add_tensor(gname, data, raw_dtype=raw)
    out[name] = unpermute(deq, H, H if "q_proj" in name else KV) if perm else deq


def reference_logits(model, state, tokens):
    """HF logits with the model's weights replaced by what the GGUF file decodes to"""
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in state.items():
            if k in sd:
                sd[k].copy_(torch.from_numpy(np.asarray(v, dtype=np.float32)).reshape(sd[k].shape))
        if getattr(model.config, "tie_word_embeddings", False):
            model.tie_weights()
        return model(torch.tensor([tokens])).logits[0].float().numpy()


def build(case, workdir, seed=99):
    """case: (name, model_type, config overrides, plan dict, seq, options) ->
    (gguf path, tokens, reference logits, model)"""
    name, model_type, overrides, plan, seq, opts = case
    torch.manual_seed(seed)
    hf_type = "qwen3" if model_type == "qwen3" else model_type
    cfg = hf_cases.make_config(hf_type, dict(overrides))
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    hf_cases.randomize(model, seed)
    hf_cases.mla_mscale_v4_fix(model, cfg, model_type)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"{name}.gguf")
    state = convert(model, cfg, model_type, path, plan, **opts)
    rng = np.random.default_rng(seed + seq)
    tokens = rng.integers(0, cfg.vocab_size, size=seq).tolist()
    ref = reference_logits(model, state, tokens)
    return path, tokens, ref, model
