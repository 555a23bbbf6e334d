"""End-to-end speed: moe against PyTorch + transformers on the same model, prompt and thread count,
in the same run, next to the machine's measured read bandwidth and the decode roofline.

Models (random bf16 weights, made by make_random_model.py into MOE_BENCH_DIR, default
~/.cache/moe-bench): a Mixtral-like one (8 experts, top-2, ~2 GB) and a Qwen3-30B-A3B-like one
(128 experts, top-8, ~4 GB). For each and for 1 and 2 threads: prefill of 512 tokens and greedy
decode of 32 tokens after it.

Writes docs/PERFORMANCE.md (table + machine details) and prints the table.
usage: python bench/bench_e2e.py --moe build/moe [--models mixtral2g,qwen3_4g] [--threads 1,2]"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def sh(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def ensure_model(preset, bench_dir):
    d = os.path.join(bench_dir, preset)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(HERE, "make_random_model.py"), preset, d], check=True)
    return d


def torch_run(model_dir, threads, n_prompt, n_gen, seed=1):
    torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, V, (1, n_prompt), generator=g)
    with torch.inference_mode():
        model(prompt[:, :16])  # warm-up: touch weights, initialise kernels
        t0 = time.perf_counter()
        out = model(prompt, use_cache=True)
        t_prefill = time.perf_counter() - t0
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(n_gen):
            out = model(nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
        t_decode = time.perf_counter() - t0
    del model
    return n_prompt / t_prefill, n_gen / t_decode


def moe_run(moe, model_dir, threads, n_prompt, n_gen, extra):
    out = sh([moe, "bench", model_dir, "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen), "--json"] + extra)
    return json.loads(out)


def part_bytes(model_dir):
    """Bytes of weights one decoded token reads, by part: attention, routed experts (k of E per layer,
    plus the router), other FFN (shared experts, dense layers), head. From the safetensors headers."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    E = cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 1
    k = cfg.get("num_experts_per_tok", 1)
    parts = dict(attention=0, moe=0, dense_ffn=0, head=0)
    for f in sorted(os.listdir(model_dir)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(model_dir, f), "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            hdr = json.loads(fh.read(n))
        for name, v in hdr.items():
            if name == "__metadata__":
                continue
            size = v["data_offsets"][1] - v["data_offsets"][0]
            if name.startswith("lm_head"):
                parts["head"] += size
            elif ".self_attn." in name:
                parts["attention"] += size
            elif ".experts." in name and "shared" not in name:
                parts["moe"] += size * k / E
            elif ".mlp.gate." in name or ".block_sparse_moe.gate." in name:
                parts["moe"] += size
            elif ".mlp." in name or ".block_sparse_moe." in name:
                parts["dense_ffn"] += size
    return parts


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    gcc = sh(["gcc", "--version"]).splitlines()[0]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; {platform.system()} {platform.release()}; {gcc}; "
            f"torch {torch.__version__}, transformers {transformers.__version__}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", default=os.path.join(ROOT, "build", "moe"))
    ap.add_argument("--models", default="mixtral2g,qwen3_4g")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "PERFORMANCE.md"))
    ap.add_argument("--moe-args", default="--no-mmap",
                    help="extra flags for moe bench (default --no-mmap: weights in memory, as PyTorch loads them)")
    a = ap.parse_args()
    bench_dir = os.environ.get("MOE_BENCH_DIR", os.path.expanduser("~/.cache/moe-bench"))
    rows = []
    for preset in a.models.split(","):
        d = ensure_model(preset, bench_dir)
        for t in map(int, a.threads.split(",")):
            m = moe_run(a.moe, d, t, a.prompt, a.gen, a.moe_args.split())
            tp, tg = torch_run(d, t, a.prompt, a.gen)
            row = dict(model=preset, threads=t, simd=m["simd"], moe_prefill=m["prefill_tok_s"], torch_prefill=tp,
                       moe_decode=m["decode_tok_s"], torch_decode=tg, roofline=m["roofline_tok_s"],
                       bw=m["read_bandwidth_gb_s"], mb_per_tok=m["bytes_per_token"] / 1e6,
                       ms=m["decode_ms_per_token"], part_bytes=part_bytes(d))
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        "# Performance",
        "",
        "Regenerate with `python bench/bench_e2e.py` (needs the venv from scripts/setup.sh; makes the random",
        "models on first use). Every number below comes from one run of that script: moe and the peer",
        "(PyTorch + transformers, bf16 weights, same thread count, same random prompt) run back to back.",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today()}.",
        "",
        f"Prefill: {a.prompt} tokens in one call. Decode: {a.gen} greedy tokens after the prompt, one at a time with the",
        "KV cache. Roofline = measured read bandwidth / bytes of weights read per decoded token (`moe info`).",
        f"moe runs with `{a.moe_args}`; PyTorch loads the weights into memory with `from_pretrained`.",
        "",
        "| model | threads | SIMD | prefill moe tok/s | prefill torch tok/s | prefill ratio | decode moe tok/s | decode torch tok/s | decode ratio | read GB/s | MB/token | roofline tok/s | decode / roofline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['threads']} | {r['simd']} | {r['moe_prefill']:.1f} | {r['torch_prefill']:.1f} | "
                     f"{r['moe_prefill'] / r['torch_prefill']:.2f}x | {r['moe_decode']:.2f} | {r['torch_decode']:.2f} | "
                     f"{r['moe_decode'] / r['torch_decode']:.2f}x | {r['bw']:.1f} | {r['mb_per_tok']:.0f} | "
                     f"{r['roofline']:.2f} | {100 * r['moe_decode'] / r['roofline']:.0f}% |")
    lines += ["", "Targets (issue 3): decode at least 85% of the roofline; prefill at least 2x PyTorch.", "",
              "Where decode time goes (moe, per decoded token, from `moe bench --json`): milliseconds per part and",
              "the read rate each part reaches on its own weights (bytes it reads / its time). Norms, RoPE,",
              "embedding and sampling are not in any part.", "",
              "| model | threads | attention ms | attention GB/s | MoE ms | MoE GB/s | other FFN ms | head ms | head GB/s | sum of parts ms | whole token ms |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms, b = r["ms"], r["part_bytes"]
        rate = lambda part: f"{b[part] / (ms[part] * 1e-3) / 1e9:.1f}" if ms[part] > 0 else "-"
        lines.append(f"| {r['model']} | {r['threads']} | {ms['attention']:.2f} | {rate('attention')} | {ms['moe']:.2f} | "
                     f"{rate('moe')} | {ms['dense_ffn']:.2f} | {ms['head']:.2f} | {rate('head')} | "
                     f"{sum(ms.values()):.2f} | {1e3 / r['moe_decode']:.2f} |")
    lines.append("")
    # hand-written analysis below the marker survives regeneration
    marker = "<!-- notes: kept across regeneration -->"
    notes = marker + "\n"
    if os.path.exists(a.out):
        old = open(a.out).read()
        if marker in old:
            notes = old[old.index(marker):]
    lines.append(notes)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, a.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
