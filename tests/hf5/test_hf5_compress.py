"""`moe prune` and `moe merge` on checkpoints written by transformers 5 (its own expert layout and config
spelling), checked against transformers 5 loading the output:
  1. pruning with --keep E gives byte-identical logits; pruning to half (reap and task on the layout
     transformers 5 saves, freq on the fused one) gives a folder
     transformers 5 loads, with moe's logits within 1e-4 of its own, in the input's tensor layout
     (each case as transformers 5 saves it and in the fused layout, experts.gate_up_proj/down_proj);
  2. merging (msmoe on the saved layout, hcsmoe on the fused one) with the hf layout gives a folder transformers 5 loads with moe's logits; the compact
     layout gives moe the same logits bit for bit and transformers 5 refuses it.
  3. the same (REAP pruning, M-SMoE merging) for every case of the families transformers 5 brings
     (tests/hf5/families.py: GLM-4.5 with groups, MiniMax-M2, Granite with its fused input_linear,
     ERNIE 4.5 with its [1][E] score bias, Phi-MoE), as saved and fused.
Usage: test_hf5_compress.py --moe BIN --work DIR"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import hf_cases

CASES = ["mixtral_e8k2", "qwen3_moe_e16k4", "olmoe_e8k2", "deepseek_v3_base", "qwen2_moe_shared"]
TOL = 1e-4
FUSED = ("experts.gate_up_proj", "input_linear.weight")   # transformers 5's and granite's fused experts


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))}... exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


def moe_logits(moe, d, toks):
    return run([moe, "logits", d, "--tokens", toks])


def hf_logits(d, tokens):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return m(torch.tensor([tokens])).logits[0].float().numpy()


def check(args, name, d, tokens, failures, prunes, merges):
    cfg = json.load(open(os.path.join(d, "config.json")))
    E = next(cfg[k] for k in ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts") if k in cfg)
    k = cfg.get("num_experts_per_tok", cfg.get("moe_k"))
    G = cfg.get("n_group", 1) if cfg["model_type"] in ("deepseek_v3", "dots1", "glm4_moe") else 1
    # half the experts, but a multiple of the groups, each group able to hold the top-k of topk_group groups
    per = -(-k // cfg.get("topk_group", 1)) if G > 1 else 1
    keep = max(k, E // 2, G * per)
    keep = (keep + G - 1) // G * G
    toks = ",".join(map(str, tokens))
    cf = os.path.join(args.work, f"{name}.calib.txt")
    open(cf, "w").write(" ".join(map(str, np.random.default_rng(2).integers(0, cfg["vocab_size"], size=150).tolist())))
    base = moe_logits(args.moe, d, toks)
    fused = any(x.endswith(FUSED) for x in load_file(os.path.join(d, "model.safetensors")))
    tag = "fused" if fused else "per-expert"
    n0 = len(failures)
    err = rel_err(np.array(json.loads(base)["logits"]), hf_logits(d, tokens))
    if err > TOL:
        failures.append(f"{name} ({tag}): transformers 5 and moe disagree on the input ({err:.2e})")
    o = f"{d}.keepall"
    shutil.rmtree(o, ignore_errors=True)
    run([args.moe, "prune", d, o, "--method", "freq", "--keep", E, "--calib-ids", cf])
    if moe_logits(args.moe, o, toks) != base:
        failures.append(f"{name} ({tag}): --keep {E} changed the logits")
    for method in prunes:
        o = f"{d}.{method}"
        shutil.rmtree(o, ignore_errors=True)
        run([args.moe, "prune", d, o, "--method", method, "--keep", keep, "--calib-ids", cf])
        if fused != any(x.endswith(FUSED) for x in load_file(os.path.join(o, "model.safetensors"))):
            failures.append(f"{name} ({tag}): prune {method} changed the tensor layout")
        mine = np.array(json.loads(moe_logits(args.moe, o, toks))["logits"])
        err = rel_err(mine, hf_logits(o, tokens))
        if err > TOL:
            failures.append(f"{name} ({tag}): prune {method}: transformers 5 disagrees ({err:.2e})")
    for method in merges:
        oc, oh = f"{d}.{method}_compact", f"{d}.{method}_hf"
        for o, lay in ((oc, "compact"), (oh, "hf")):
            shutil.rmtree(o, ignore_errors=True)
            run([args.moe, "merge", d, o, "--method", method, "--groups", E // 2, "--calib-ids", cf, "--layout", lay])
        lh = moe_logits(args.moe, oh, toks)
        if moe_logits(args.moe, oc, toks) != lh:
            failures.append(f"{name} ({tag}): {method}: compact and hf layouts differ")
        err = rel_err(np.array(json.loads(lh)["logits"]), hf_logits(oh, tokens))
        if err > TOL:
            failures.append(f"{name} ({tag}): {method}: transformers 5 disagrees on the hf layout ({err:.2e})")
        try:
            hf_logits(oc, tokens)
            failures.append(f"{name} ({tag}): {method}: transformers 5 loaded the compact layout")
        except Exception:
            pass
    print(f"{name:20s} {tag:10s} {'ok' if len(failures) == n0 else 'FAILED'}", flush=True)


def no_negative_bias(d):
    """Biases made non-negative: a negative bias-corrected score loses to the 0.0 transformers puts in
    masked groups, and torch.topk breaks ties among those zeros arbitrarily (tests/hf/test_compress.py)."""
    for f in os.listdir(d):
        if f.endswith(".safetensors"):
            sd = load_file(os.path.join(d, f))
            if any(k.endswith("e_score_correction_bias") for k in sd):
                for k in sd:
                    if k.endswith("e_score_correction_bias"):
                        sd[k] = sd[k].abs()
                save_file(sd, os.path.join(d, f), metadata={"format": "pt"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    assert hf_cases.TRANSFORMERS_MAJOR >= 5, "needs transformers 5"
    os.makedirs(args.work, exist_ok=True)
    cases = {c[0]: c for c in hf_cases.CASES}
    failures = []
    for name in CASES:
        try:
            d0, tokens, _, _, _ = hf_cases.build_case(cases[name], args.work, capture_routes=False)
            if name.startswith("deepseek_v3"):  # no ties between masked groups' zeros (see tests/hf/test_compress.py)
                sd = load_file(os.path.join(d0, "model.safetensors"))
                for key in sd:
                    if key.endswith("e_score_correction_bias"):
                        sd[key] = sd[key].abs()
                save_file(sd, os.path.join(d0, "model.safetensors"), metadata={"format": "pt"})
            # the same weights in the fused layout (experts.gate_up_proj, experts.down_proj)
            dF = d0 + ".fused"
            shutil.rmtree(dF, ignore_errors=True)
            shutil.copytree(d0, dF)
            hf_cases.fuse_experts_like_v5(dF)
            toks = ",".join(map(str, tokens))
            if moe_logits(args.moe, dF, toks) != moe_logits(args.moe, d0, toks):
                failures.append(f"{name}: the fused copy is not the same model in moe")
            check(args, name, d0, tokens, failures, ("reap", "task"), ("msmoe",))
            check(args, name, dF, tokens, failures, ("freq",), ("hcsmoe",))
        except Exception as e:
            failures.append(f"{name}: {e}")
            print(f"{name}: ERROR {e}", flush=True)
    # the families of tests/hf5/families.py (GLM-4.5, MiniMax-M2, Granite, ERNIE 4.5, Phi-MoE), as saved
    import families
    from test_families_logits import CASES as FAMILY_CASES
    for case in FAMILY_CASES:
        name = case[0]
        # gpt-oss: transformers cannot reload a null sliding_window nor MXFP4 here (no accelerate); its
        # experts' biases cannot be merged (moe merge refuses them), so pruning only
        if case[1] == "gpt_oss" and (case[5].get("mxfp4") or "config" in case[5] and name.endswith("no_attn_bias")):
            continue
        try:
            d, tokens, _, _, _ = families.build_case(case, args.work)
            no_negative_bias(d)
            check(args, name, d, tokens, failures, ("reap",), () if case[1] == "gpt_oss" else ("msmoe",))
        except Exception as e:
            failures.append(f"{name}: {e}")
            print(f"{name}: ERROR {e}", flush=True)
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("pruned and merged transformers 5 checkpoints load in transformers 5 with moe's logits")


if __name__ == "__main__":
    main()
