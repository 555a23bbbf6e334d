"""moe versus transformers 5.x, the second reference (tests/hf holds the pinned 4.x one).

transformers 5 writes config.json differently: "rope_parameters" (theta inside) instead of "rope_theta"
+ "rope_scaling", "num_local_experts" instead of "num_experts" for Qwen3-MoE, and its config classes
accept a second spelling of some keys (attribute_map). For every case of hf_cases.CASES (every family
moe loads, DeepSeek-V2/V3 with YaRN among them) the model is built by transformers 5's own class,
saved with its save_pretrained, and:
  1. `moe logits` on the saved folder matches transformers 5's logits (float32, relative error <= 1e-4
     per row, the same measure as tests/hf/test_hf_logits.py);
  2. the folder with the expert count under the other spelling transformers 5 accepts (mixtral
     num_experts, olmoe num_local_experts, DeepSeek-V2 num_experts, DeepSeek-V3 and dots1
     num_local_experts, qwen3_moe num_experts) loads in transformers 5 with the same count and gives
     moe's logits bit for bit; both spellings with different values are refused (exit 2, both named);
  3. with rope parameters, the same folder written in 4.x's spelling (rope_theta + rope_scaling) gives
     the same logits too.
Usage: test_hf5_logits.py --moe BIN --work DIR [--only SUBSTRING]"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import transformers
from transformers import AutoConfig

import hf_cases

TOL = 1e-4

# the key each family's config class stores the expert count in, and the alias its attribute_map accepts
ALIASES = {"mixtral": ("num_local_experts", "num_experts"), "qwen3_moe": ("num_local_experts", "num_experts"),
           "olmoe": ("num_experts", "num_local_experts"), "deepseek_v2": ("n_routed_experts", "num_experts"),
           "deepseek_v3": ("n_routed_experts", "num_local_experts"), "dots1": ("n_routed_experts", "num_local_experts")}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


def logits(moe, d, toks):
    return np.array(json.loads(run([moe, "logits", d, "--tokens", toks]))["logits"], dtype=np.float64)


def variant(src, dst, edit):
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    path = os.path.join(dst, "config.json")
    cfg = json.load(open(path))
    edit(cfg)
    json.dump(cfg, open(path, "w"), indent=2)
    return dst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    assert hf_cases.TRANSFORMERS_MAJOR >= 5, f"needs transformers 5, found {transformers.__version__}"
    os.makedirs(args.work, exist_ok=True)
    failures = []
    for case in hf_cases.CASES:
        name, model_type = case[0], case[1]
        if args.only and args.only not in name:
            continue
        try:
            d, tokens, ref, _, _ = hf_cases.build_case(case, args.work, capture_routes=False)
            toks = ",".join(map(str, tokens))
            saved = json.load(open(os.path.join(d, "config.json")))
            if "rope_parameters" not in saved or "rope_scaling" in saved:
                failures.append(f"{name}: transformers 5 did not write rope_parameters alone: {sorted(saved)}")
            ours = logits(args.moe, d, toks)
            err = rel_err(ours, ref) if ours.shape == ref.shape else float("inf")
            if not err <= TOL:
                failures.append(f"{name}: logits relative error {err:.2e} > {TOL} (shape {ours.shape} vs {ref.shape})")
            notes = []
            if model_type in ALIASES:
                key, alias = ALIASES[model_type]
                written = key if key in saved else alias
                other = alias if written == key else key
                count = saved[written]

                def swap(c):
                    c[other] = c.pop(written)
                vd = variant(d, d + ".alias", swap)
                got = getattr(AutoConfig.from_pretrained(vd), key)
                if got != count:
                    failures.append(f"{name}: transformers 5 reads {other}={count} as {key}={got}")
                if not np.array_equal(logits(args.moe, vd, toks), ours):
                    failures.append(f"{name}: logits differ with \"{other}\" instead of \"{written}\"")

                def clash(c):
                    c[other] = count + 1
                vd = variant(d, d + ".clash", clash)
                p = subprocess.run([args.moe, "info", vd], capture_output=True, text=True)
                if p.returncode != 2 or written not in p.stderr or other not in p.stderr:
                    failures.append(f"{name}: {written}={count} with {other}={count + 1}: exit {p.returncode}, "
                                    f"{p.stderr.strip()!r}")
                notes.append(f"{other} ok")
            rp = saved.get("rope_parameters") or {}
            if rp.get("rope_type", "default") != "default":
                def v4_spelling(c):
                    r = c.pop("rope_parameters")
                    c["rope_theta"] = r.pop("rope_theta")
                    c["rope_scaling"] = r
                vd = variant(d, d + ".rope4", v4_spelling)
                if not np.array_equal(logits(args.moe, vd, toks), ours):
                    failures.append(f"{name}: logits differ with rope_scaling + rope_theta instead of rope_parameters")
                notes.append(f"rope {rp['rope_type']} both spellings ok")
            print(f"{name:28s} logits rel err {err:.1e}  {'; '.join(notes)}", flush=True)
        except Exception as e:  # a crash in one case must not hide the others
            failures.append(f"{name}: {e}")
            print(f"{name}: ERROR {e}", flush=True)
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"all cases match transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
