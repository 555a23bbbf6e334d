"""FP8 and MXFP4 weights in safetensors checkpoints, as DeepSeek-V3/R1, Kimi-K2 and gpt-oss ship them
(core/ggml_types.h, io/weights.c):
  1. FP8: every projection of a tiny random DeepSeek-V3 and Qwen3-MoE stored as F8_E4M3 with an F32
     weight_scale_inv per 128 x 128 tile (the quantization_config of those checkpoints). moe keeps the
     8-bit values (dtype f8_e4m3_b128) and multiplies them without a bf16 copy; its logits match
     transformers run on the dequantized weights (e4m3 value times tile scale, in f32) within 1e-4,
     stepwise decoding matches the prefill;
  2. MXFP4: the experts of a Qwen3-MoE stored fused (transformers 5's gate_up_proj / down_proj) as
     gpt-oss does, *_blocks U8 [.., rows, G, 16] + *_scales U8 [.., rows, G], quantized with the gguf
     package's MXFP4 quantizer; moe keeps them 4-bit (dtype mxfp4) and matches transformers on the
     dequantized experts within 1e-4;
  3. broken pairs (scale of the wrong shape or type, blocks without scales) are refused with one line
     naming the file and tensor, exit code 2.
  0. the joined tensors, converted by moe (tests/tools/weights_dump), are bit for bit torch's
     float8_e4m3fn value times the tile scale, for all 256 codes (NaN codes as NaN), and transformers'
     own gpt-oss MXFP4 dequantizer (convert_moe_packed_tensors), for random blocks and scales."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import hf_cases

FAIL = []


def check(ok, msg):
    if not ok:
        FAIL.append(msg)
        print("FAIL:", msg, flush=True)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


def fp8_quant(w):
    """W [.., rows, cols] f32 -> (e4m3 tensor, f32 scales [.., ceil(rows/128), cols/128], dequantized f32)"""
    *lead, rows, cols = w.shape
    sr, sc = (rows + 127) // 128, cols // 128
    pad = torch.zeros(*lead, sr * 128, cols)
    pad[..., :rows, :] = w
    tiles = pad.reshape(*lead, sr, 128, sc, 128)
    amax = tiles.abs().amax(dim=(-3, -1))
    scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax)).float()
    full = scale.repeat_interleave(128, -2).repeat_interleave(128, -1)[..., :rows, :]
    q = (w / full).to(torch.float8_e4m3fn)
    return q, scale, q.float() * full


FP8_SKIP = ("embed_tokens", "lm_head", "norm", "mlp.gate.weight", "e_score_correction")


def fp8_case(name, model_type, overrides, work, seq):
    cfg = hf_cases.make_config(model_type, dict(overrides))
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    hf_cases.randomize(model, 3)
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    sd = load_file(os.path.join(d, "model.safetensors"))
    out, n_fp8 = {}, 0
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in sd.items():
            if v.dim() >= 2 and k.endswith(".weight") and not any(s in k for s in FP8_SKIP):
                q, s, deq = fp8_quant(v.float())
                out[k], out[k + "_scale_inv"] = q, s
                params[k].copy_(deq)   # the reference multiplies what the file decodes to
                n_fp8 += 1
            else:
                out[k] = v
    save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = json.load(open(os.path.join(d, "config.json")))
    c["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                "weight_block_size": [128, 128]}
    json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)
    hf_cases.mla_mscale_v4_fix(model, cfg, model_type)
    tokens = np.random.default_rng(seq).integers(0, cfg.vocab_size, size=seq).tolist()
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].float().numpy()
    return d, tokens, ref, n_fp8


def mxfp4_split(w):
    """W [.., rows, cols] f32 -> (blocks U8 [.., rows, G, 16], scales U8 [.., rows, G], dequantized)"""
    arr = w.numpy().astype(np.float32)
    data = gguf.quants.quantize(arr, Q.MXFP4)                   # [.., rows, G * 17], ggml's block layout
    deq = gguf.quants.dequantize(data, Q.MXFP4).reshape(arr.shape)
    blk = data.reshape(*arr.shape[:-1], -1, 17)
    scales, nib = blk[..., 0], blk[..., 1:]
    q = np.concatenate([nib & 15, nib >> 4], axis=-1)           # [.., G, 32] codes in element order
    blocks = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)   # gpt-oss: element 2i low nibble, 2i+1 high
    return torch.from_numpy(np.ascontiguousarray(blocks)), torch.from_numpy(np.ascontiguousarray(scales)), torch.from_numpy(deq)


def mxfp4_case(name, work, seq):
    overrides = dict(hf_cases.BASE, hidden_size=64, intermediate_size=64, num_experts=8, num_experts_per_tok=2,
                     moe_intermediate_size=96, norm_topk_prob=True, head_dim=16)
    cfg = hf_cases.make_config("qwen3_moe", overrides)
    torch.manual_seed(4)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    hf_cases.randomize(model, 4)
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=True)
    hf_cases.fuse_experts_like_v5(d)
    sd = load_file(os.path.join(d, "model.safetensors"))
    out = {}
    I = cfg.moe_intermediate_size
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj"):
                b, s, deq = mxfp4_split(v.float())
                out[k + "_blocks"], out[k + "_scales"] = b, s
                layer = int(k.split(".")[2])
                experts = model.model.layers[layer].mlp.experts
                for e in range(v.shape[0]):
                    if k.endswith("gate_up_proj"):
                        experts[e].gate_proj.weight.copy_(deq[e, :I])
                        experts[e].up_proj.weight.copy_(deq[e, I:])
                    else:
                        experts[e].down_proj.weight.copy_(deq[e])
            else:
                out[k] = v
    save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    tokens = np.random.default_rng(seq).integers(0, cfg.vocab_size, size=seq).tolist()
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].float().numpy()
    return d, tokens, ref


def compare(moe, name, d, tokens, ref, want_dtype, work):
    toks = ",".join(map(str, tokens))
    out, step = os.path.join(work, name + ".json"), os.path.join(work, name + ".step.json")
    p = run([moe, "logits", d, "--tokens", toks, "--out", out])
    if p.returncode:
        check(False, f"{name}: moe logits failed: {p.stderr.strip()}")
        return
    ours = np.array(json.load(open(out))["logits"], dtype=np.float64)
    err = rel_err(ours, ref)
    check(err <= 1e-4, f"{name}: logits relative error {err:.2e}")
    run([moe, "logits", d, "--tokens", toks, "--out", step, "--stepwise"])
    serr = rel_err(np.array(json.load(open(step))["logits"]), ours)
    check(serr <= 1e-5, f"{name}: stepwise differs from the prefill by {serr:.2e}")
    info = json.loads(run([moe, "info", d, "--json"]).stdout)
    check(info["dtype"] == want_dtype, f"{name}: dominant dtype {info['dtype']}, expected {want_dtype}")
    print(f"{name:24s} logits rel err {err:.1e}  stepwise {serr:.1e}  dtype {info['dtype']}", flush=True)


def expect_refusal(moe, d, what, pattern):
    p = run([moe, "info", d])
    lines = p.stderr.strip().split("\n")
    check(p.returncode == 2 and len(lines) == 1 and pattern in lines[0] and "model.safetensors" in lines[0],
          f"{what}: rc {p.returncode}, stderr {p.stderr.strip()!r}")


def test_converters(work, tools):
    d = os.path.join(work, "codes")
    os.makedirs(d, exist_ok=True)
    dump = os.path.join(tools, "weights_dump")
    rng = np.random.default_rng(int(os.environ.get("MOE_TEST_SEED", "7")))
    codes = torch.arange(256, dtype=torch.uint8).repeat(130 * 384 // 256 + 1)[: 130 * 384].reshape(130, 384)
    q = codes.view(torch.float8_e4m3fn)
    scale = torch.tensor(rng.uniform(1e-4, 3.0, size=(2, 3)), dtype=torch.float32)   # 130 rows: two row tiles
    full = scale.repeat_interleave(128, 0).repeat_interleave(128, 1)[:130]
    want = (q.float() * full).numpy()
    raw = rng.integers(0, 256, size=(2, 3, 5, 16), dtype=np.uint8)
    sc = rng.integers(100, 150, size=(2, 3, 5), dtype=np.uint8)
    # transformers' own gpt-oss dequantizer (it returns [.., cols, rows]; moe keeps [.., rows, cols])
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
    want4 = convert_moe_packed_tensors(torch.from_numpy(raw), torch.from_numpy(sc), dtype=torch.float32).transpose(1, 2).numpy()
    save_file({"a.weight": q, "a.weight_scale_inv": scale, "b_blocks": torch.from_numpy(raw), "b_scales": torch.from_numpy(sc)},
              os.path.join(d, "model.safetensors"))
    for name, ref in (("a.weight", want), ("b", want4)):
        out = os.path.join(d, name + ".f32")
        p = run([dump, d, name, out])
        if p.returncode:
            check(False, f"weights_dump {name}: {p.stderr.strip()}")
            continue
        got = np.fromfile(out, dtype=np.float32).reshape(ref.shape)
        # bit for bit, except that transformers' MXFP4 table has -0.0 where ggml's has +0.0 (equal values)
        nan = np.isnan(ref)
        same = np.array_equal(np.isnan(got), nan) and np.array_equal(got[~nan], ref[~nan].astype(np.float32)) and \
            np.array_equal(got[~nan & (ref != 0)].view(np.uint32), ref[~nan & (ref != 0)].astype(np.float32).view(np.uint32))
        check(same, f"{name}: moe's values differ from the reference at {int(np.sum(got != ref)) - int(np.sum(np.isnan(ref)))} places")
    print("converters: all 256 e4m3 codes x tile scales as torch, MXFP4 pairs as transformers' dequantizer", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    moe = args.moe
    tools = os.environ.get("MOE_TEST_TOOLS") or os.path.join(os.path.dirname(os.path.abspath(moe)), "tests")
    test_converters(args.work, tools)
    ds = dict(hf_cases.BASE, hidden_size=128, intermediate_size=256, n_routed_experts=8, num_experts_per_tok=2,
              moe_intermediate_size=128, n_shared_experts=1, first_k_dense_replace=1, n_group=2, topk_group=1,
              routed_scaling_factor=2.5, norm_topk_prob=True, num_key_value_heads=4, q_lora_rank=128, kv_lora_rank=128,
              qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, num_hidden_layers=2, vocab_size=160)
    d, tokens, ref, n = fp8_case("fp8_deepseek_v3", "deepseek_v3", ds, args.work, 19)
    compare(moe, "fp8_deepseek_v3", d, tokens, ref, "f8_e4m3_b128", args.work)
    q3 = dict(hf_cases.BASE, hidden_size=256, intermediate_size=128, num_experts=4, num_experts_per_tok=2,
              moe_intermediate_size=128, head_dim=64, norm_topk_prob=True, vocab_size=160)
    d2, tokens2, ref2, _ = fp8_case("fp8_qwen3_moe", "qwen3_moe", q3, args.work, 17)
    compare(moe, "fp8_qwen3_moe", d2, tokens2, ref2, "f8_e4m3_b128", args.work)
    d3, tokens3, ref3 = mxfp4_case("mxfp4_qwen3_moe_fused", args.work, 21)
    compare(moe, "mxfp4_qwen3_moe_fused", d3, tokens3, ref3, "mxfp4", args.work)

    # broken pairs
    path = os.path.join(d2, "model.safetensors")
    sd = load_file(path)
    key = next(k for k in sd if k.endswith("q_proj.weight_scale_inv"))
    bad = dict(sd)
    bad[key] = torch.ones(sd[key].shape[0] + 1, sd[key].shape[1])
    save_file(bad, path, metadata={"format": "pt"})
    expect_refusal(moe, d2, "FP8 scale of the wrong shape", "128 x 128 tile scales")
    bad[key] = torch.ones(sd[key].shape, dtype=torch.int32)
    save_file(bad, path, metadata={"format": "pt"})
    expect_refusal(moe, d2, "FP8 scale of the wrong type", "(F32, BF16 or F16)")
    del bad[key]
    save_file(bad, path, metadata={"format": "pt"})
    expect_refusal(moe, d2, "FP8 weight without its scale", "weight_scale_inv")
    path3 = os.path.join(d3, "model.safetensors")
    sd3 = load_file(path3)
    key3 = next(k for k in sd3 if k.endswith("_scales"))
    del sd3[key3]
    save_file(sd3, path3, metadata={"format": "pt"})
    expect_refusal(moe, d3, "MXFP4 blocks without scales", "_blocks")
    if FAIL:
        print(f"\n{len(FAIL)} FAILURES")
        sys.exit(1)
    print("FP8 and MXFP4 checkpoints match transformers on their dequantized weights")


if __name__ == "__main__":
    main()
