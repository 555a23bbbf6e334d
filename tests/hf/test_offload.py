"""Experts on disk give exactly the outputs of experts in memory.

For a spread of tiny Hugging Face models (every MoE family, f32/bf16/f16, a sharded checkpoint), run
`moe logits` (prefill and --stepwise) and `moe generate` with all experts resident, then with
--mem-budget at one expert's slot and at a quarter of all experts, under every --cache policy, with and
without --prefetch, and with --direct-io. The JSON (and generated ids) must be byte-identical: the
store hands the kernels the same bytes, so any difference is a bug. Also checks that the budget really
is below the experts' size (at least 3x) and that --stats reports reads."""
import argparse
import json
import os
import struct
import subprocess
import sys

import hf_cases

CASES = ["mixtral_e8k2", "mixtral_f16", "qwen2_moe_shared", "qwen3_moe_e16k4", "qwen3_moe_bf16", "olmoe_e8k2",
         "deepseek_v2_group", "deepseek_v3_base", "qwen3_moe_sharded", "mixtral_fused_v5", "qwen3_moe_fused_v5_bf16"]
POLICIES = ["lru", "lfu", "activation", "fate", "none"]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout, p.stderr


def expert_sizes(d):
    """(largest expert in bytes, all experts' bytes) from the safetensors headers."""
    per, total = {}, 0
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
        for name, t in hdr.items():
            if name == "__metadata__" or ".experts." not in name:
                continue
            b = t["data_offsets"][1] - t["data_offsets"][0]
            total += b
            if len(t["shape"]) == 3:  # fused experts (transformers 5): [E][rows][cols]
                for e in range(t["shape"][0]):
                    key = name.split(".experts.")[0] + f".{e}"
                    per[key] = per.get(key, 0) + b // t["shape"][0]
                continue
            key = name.split(".experts.")[0] + "." + name.split(".experts.")[1].split(".")[0]
            per[key] = per.get(key, 0) + b
    return max(per.values()), total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    failures = []
    cases = {c[0]: c for c in hf_cases.CASES}
    for name in CASES:
        try:
            d, tokens, _, _, _ = hf_cases.build_case(cases[name], args.work)
            toks = ",".join(map(str, tokens))
            one, total = expert_sizes(d)
            slot = (one + 3 * 4096 + 4095) // 4096 * 4096  # upper bound of one slot
            budgets = [slot, max(slot, total // 4)]
            if budgets[0] * 3 > total:
                failures.append(f"{name}: experts ({total} bytes) are not 3x one slot ({slot})")
            ref = {}
            for mode in ("prefill", "stepwise"):
                out = os.path.join(args.work, f"{name}.{mode}.ref.json")
                run([args.moe, "logits", d, "--tokens", toks, "-o", out] + (["--stepwise"] if mode == "stepwise" else []))
                ref[mode] = open(out, "rb").read()
            ref_gen = run([args.moe, "generate", d, "--tokens", toks, "-n", "12"])[0]
            n_runs = 0
            # every policy with and without prefetch at one slot (the most evictions), a few at the larger budget
            variants = [(budgets[0], p, pf, False) for p in POLICIES for pf in (False, True)]
            variants += [(budgets[1], p, True, False) for p in ("lru", "activation", "fate")]
            variants += [(budgets[0], "lru", True, True), (budgets[1], "lfu", False, True)]
            variants += [(budgets[0], "fate", "async", False)]  # --prefetch --no-predict
            for budget, pol, pf, direct in variants:
                flags = ["--mem-budget", str(budget), "--cache", pol] + (["--prefetch"] if pf else []) + \
                        (["--no-predict"] if pf == "async" else []) + (["--direct-io"] if direct else [])
                tag = f"budget {budget} {pol}{' prefetch' if pf else ''}{' direct' if direct else ''}"
                for mode in ("prefill", "stepwise"):
                    out = os.path.join(args.work, f"{name}.{mode}.disk.json")
                    _, err = run([args.moe, "logits", d, "--tokens", toks, "-o", out, "--stats"] + flags +
                                 (["--stepwise"] if mode == "stepwise" else []))
                    if open(out, "rb").read() != ref[mode]:
                        failures.append(f"{name}: {mode} logits with {tag} differ from the resident run")
                    js = json.loads(next(l for l in err.splitlines() if l.startswith("stats-json "))[11:])
                    if js["reads"] == 0 or js["n_slots"] * js["slot_bytes"] > budget:
                        failures.append(f"{name}: {tag}: {js['reads']} reads, {js['n_slots']} slots x {js['slot_bytes']}")
                    n_runs += 1
                gen = run([args.moe, "generate", d, "--tokens", toks, "-n", "12"] + flags)[0]
                if gen != ref_gen:
                    failures.append(f"{name}: generate with {tag} gave {gen.strip()} instead of {ref_gen.strip()}")
            print(f"{name:22s} experts {total:7d} B, budgets {budgets}: {n_runs} logits runs identical", flush=True)
        except Exception as e:
            failures.append(f"{name}: {e}")
            print(f"{name}: ERROR {e}", flush=True)
    # bad options: a usage error (exit 1) with a message naming the problem, never a crash
    try:
        d = os.path.join(args.work, "qwen3_moe_e16k4")
        dense, _, _, _, _ = hf_cases.build_case(cases["llama_gqa"], args.work)
        bad = [([d, "--mem-budget", "1K"], 1, "smaller than one expert"),
               ([d, "--mem-budget", "1M", "--cache", "bogus"], 1, "unknown cache policy"),
               ([d, "--prefetch"], 1, "need an expert memory budget"),
               ([d, "--cache", "lfu"], 1, "need an expert memory budget"),
               ([d, "--mem-budget", "12Q"], 1, "expected a size"),
               ([d, "--mem-budget", "1M", "--io-threads", "0"], 1, "--io-threads"),
               ([d, "--mem-budget", "1M", "--no-predict"], 1, "--no-predict needs --prefetch"),
               ([dense, "--mem-budget", "1M"], 1, "dense model")]
        for argv, code, msg in bad:
            p = subprocess.run([args.moe, "logits"] + argv + ["--tokens", "1,2"], capture_output=True, text=True)
            if p.returncode != code or msg not in p.stderr:
                failures.append(f"moe logits {' '.join(argv[1:])}: exit {p.returncode} ({p.stderr.strip()}), "
                                f"expected {code} and '{msg}'")
        print(f"bad options: {len(bad)} cases checked", flush=True)
    except Exception as e:
        failures.append(f"bad options: {e}")
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("experts on disk match experts in memory exactly")


if __name__ == "__main__":
    main()
