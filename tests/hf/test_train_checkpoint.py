"""test_train_checkpoint.py - checkpoints written by `moe train` load in Hugging Face transformers and
give the same logits as `moe logits` on the same folder.

For each standard layout (qwen3_moe with and without shared experts, mixtral, dots1 for DeepSeek-style
routing, dense qwen3_moe and llama) the test trains a tiny model for a few steps on a small text, then
runs transformers' AutoModelForCausalLM on the folder and compares every logit (float32, eager
attention); AutoTokenizer must turn text into its bytes with the checkpoint's tokenizer.json. One case
trains with --tokenizer (Llama 2's tokenizer.json): the checkpoint must carry that tokenizer, its
vocabulary must follow it, and `moe tokenize` on the checkpoint must give transformers' ids.
Options that are floats in transformers' config classes are written as floats even when whole
(--balance-loss 0, --routed-scaling 2.0: transformers 5 refuses an integer there).
Checkpoints whose router or shared experts the layout cannot express ("moe only" below: a zoo router,
shared experts or routed scaling beside qwen3_moe or mixtral, DeepSeek-V3's router in the qwen3_moe
layout) must be refused by transformers (model_type "moe_<layout>") instead of loading as a different
model, and load in moe.
tests/hf5/test_hf5_train_checkpoint.py runs the same under transformers 5.
Usage: test_train_checkpoint.py --moe BIN --work DIR"""
import argparse
import json
import os
import re
import struct
import shutil
import subprocess
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

CASES = [
    ("qwen3_moe", ["--router", "softmax_topk"]),
    ("qwen3_moe_nonorm_dense0", ["--router", "softmax_topk", "--norm-topk", "0", "--dense-layers", "1",
                                 "--balance-loss", "0"]),
    ("mixtral", ["--router", "softmax_topk", "--qk-norm", "0", "--balance-loss", "0"]),
    ("dots1", ["--router", "deepseek_v3", "--shared", "1", "--dense-layers", "1", "--routed-scaling", "2.0"]),
    ("dots1_nonorm", ["--router", "deepseek_v3", "--norm-topk", "0", "--routed-scaling", "1", "--rope-theta", "50000"]),
    ("dense", ["--experts", "0"]),
    ("dense_llama", ["--experts", "0", "--qk-norm", "0"]),
    ("qwen3_moe_llama2_tokenizer", ["--router", "softmax_topk", "--tokenizer", "LLAMA2"]),
]
MOE_ONLY = [
    ("moe_only_switch", ["--router", "switch"]),
    ("moe_only_shared_qwen3_moe", ["--router", "softmax_topk", "--shared", "1"]),
    ("moe_only_scaled_mixtral", ["--router", "softmax_topk", "--qk-norm", "0", "--routed-scaling", "2.0"]),
    ("moe_only_deepseek_router_qwen3_moe", ["--router", "deepseek_v3", "--layout", "qwen3_moe"]),
]
SHARED = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")

TINY = ["--d-model", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--seq-len", "32", "--d-ff", "64",
        "--experts", "4", "--top-k", "2", "--d-expert", "16", "--batch", "4", "--steps", "6", "--eval-every", "0",
        "--warmup", "2", "--lr", "1e-2", "--bias-rate", "0.01", "--init-std", "0.2"]


def experts_contiguous(path):
    """Each expert's gate, up and down lie back to back (the disk expert store reads one expert at once)."""
    with open(path, "rb") as f:
        h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    span = {}
    for name, v in h.items():
        m = re.fullmatch(r"model\.layers\.(\d+)\.\w+\.experts\.(\d+)\.(gate|up|down)_proj\.weight", name)
        if m:
            span.setdefault(m.group(1, 2), {})[m.group(3)] = v["data_offsets"]
    return all(p["gate"][1] == p["up"][0] and p["up"][1] == p["down"][0] for p in span.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(a.work, "data.txt")
    with open(data, "w") as f:
        f.write(("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
                 "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. ") * 40)
    torch.manual_seed(0)
    tokens = [ord(c) for c in "First Citizen:\nBefore we proceed any further, hear me speak."][:32]
    failed = 0
    for name, extra in CASES:
        out = os.path.join(a.work, name)
        shutil.rmtree(out, ignore_errors=True)
        llama2 = os.path.join(SHARED, "tokenizers", "llama2")
        extra = [llama2 if e == "LLAMA2" else e for e in extra]
        args = [a.moe, "train", "--data", data, "--out", out, "--quiet", "-t", "2"] + TINY + extra
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: moe train exited {r.returncode}: {r.stderr.strip()}")
            failed = 1
            continue
        r = subprocess.run([a.moe, "logits", out, "--tokens", ",".join(map(str, tokens))], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL {name}: moe logits exited {r.returncode}: {r.stderr.strip()}")
            failed = 1
            continue
        ours = torch.tensor(json.loads(r.stdout)["logits"], dtype=torch.float32)
        try:
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
        except Exception as e:  # e.g. transformers 5 refusing an integer where its config class wants a float
            print(f"FAIL {name}: transformers {transformers.__version__} does not load it: {str(e).splitlines()[-1][:200]}")
            failed = 1
            continue
        model.eval()
        with torch.no_grad():
            ref = model(torch.tensor([tokens])).logits[0].float()
        diff = (ours - ref).abs().max().item()
        scale = max(1.0, ref.abs().max().item())
        cfg = json.load(open(os.path.join(out, "config.json")))
        tok = AutoTokenizer.from_pretrained(out)
        text = "First Citizen: d\u00e9j\u00e0 vu\n\t"
        if "--tokenizer" in extra:
            # the checkpoint carries the tokenizer it was trained with; moe agrees with transformers on it
            want = tok(text, add_special_tokens=False)["input_ids"]
            r = subprocess.run([a.moe, "tokenize", out, text], capture_output=True, text=True)
            got = [int(line.split("\t")[0]) for line in r.stdout.splitlines() if line.strip()]
            same_file = open(os.path.join(out, "tokenizer.json"), "rb").read() == \
                open(os.path.join(llama2, "tokenizer.json"), "rb").read()
            if cfg["vocab_size"] != 32000 or not same_file or got != want or r.returncode != 0:
                print(f"FAIL {name}: vocab {cfg['vocab_size']}, same tokenizer.json {same_file}, ids {got} vs {want}")
                failed = 1
        elif tok(text)["input_ids"] != list(text.encode("utf-8")) or tok.decode(list(text.encode("utf-8"))) != text:
            # the byte-level tokenizer.json: transformers encodes text to its bytes and decodes them back
            print(f"FAIL {name}: tokenizer.json does not map text to its bytes")
            failed = 1
        if not experts_contiguous(os.path.join(out, "model.safetensors")):
            print(f"FAIL {name}: an expert's three matrices are not back to back in model.safetensors")
            failed = 1
        ok = diff <= 1e-4 * scale
        print(f"{'ok  ' if ok else 'FAIL'} {name:28s} model_type {cfg['model_type']:10s} max |diff| {diff:.3g} "
              f"(largest logit {scale:.3g})")
        failed |= not ok
    for name, extra in MOE_ONLY:
        out = os.path.join(a.work, name)
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run([a.moe, "train", "--data", data, "--out", out, "--quiet", "-t", "2"] + TINY + extra,
                           capture_output=True, text=True)
        lg = subprocess.run([a.moe, "logits", out, "--tokens", ",".join(map(str, tokens))], capture_output=True, text=True)
        if r.returncode != 0 or lg.returncode != 0:
            print(f"FAIL {name}: moe train exited {r.returncode}, moe logits {lg.returncode}: {r.stderr.strip()} {lg.stderr.strip()}")
            failed = 1
            continue
        cfg = json.load(open(os.path.join(out, "config.json")))
        try:
            AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
            refused = "loaded it"
        except (ValueError, KeyError) as e:
            refused = ""
            why = str(e).splitlines()[0][:100]
        ok = not refused and cfg["model_type"].startswith("moe_")
        print(f"{'ok  ' if ok else 'FAIL'} {name:34s} model_type {cfg['model_type']}: transformers "
              f"{refused or 'refuses it: ' + why}")
        failed |= not ok
    return failed


if __name__ == "__main__":
    sys.exit(main())
