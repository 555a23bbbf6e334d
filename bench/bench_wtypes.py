"""Decode and prefill speed of every weight type against this machine's roofline.

For each type, bench/make_bench_model writes the same random Mixtral-shaped model (the shape of
bench_e2e.py's mixtral2g: 11 layers, hidden 1024, 8 experts of 3584, top-2, vocabulary 32000; GGUF
for llama.cpp's types, a Hugging Face folder for bf16 and FP8), and `moe bench --no-mmap --json`
measures prefill and decode next to the read bandwidth it probes in the same run. Roofline = read
bandwidth / bytes of weights one decoded token reads (`moe info`): the speed of a decode that did
nothing but stream its weights once. Then bench_wtypes (the kernels alone, one matrix shape) gives
each type's decode GB/s next to a plain read of the same bytes, and its compute rate with the matrix
in cache.

Writes the tables between the wtypes markers of docs/PERFORMANCE.md (the part bench_e2e.py keeps).
usage: python3 bench/bench_wtypes.py [--build build] [--threads 1,2] [--types ...] [--models DIR] [--quick]"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TYPES = ["bf16", "f8_e4m3_b128", "ggml_q8_0", "q6_k", "q5_k", "q4_k", "ggml_q4_0", "mxfp4"]
BITS = {"bf16": 16, "f8_e4m3_b128": 8.25, "ggml_q8_0": 8.5, "q6_k": 6.5625, "q5_k": 5.5, "q4_k": 4.5, "ggml_q4_0": 4.5,
        "mxfp4": 4.25, "f16": 16, "q5_0": 5.5, "q5_1": 6, "q4_1": 5}


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        cc = sh(["cc", "--version"]).splitlines()[0]
    except (OSError, subprocess.CalledProcessError):
        cc = "compiler unknown"
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; {platform.system()} {platform.release()}; {cc}"


def verdict(kernels, quiet_gb_s=39.0):
    """Which types' kernels are too slow for their roofline: the in-cache rate (Gweights/s) against
    the weights a quiet machine's one-thread read bandwidth delivers."""
    cache = next((t for th, where, t in kernels if where == "cache"), "")
    fast, slow = [], []
    for line in cache.splitlines():
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) < 7 or not c[1].replace(".", "").isdigit():
            continue
        rate, need = float(c[5]), quiet_gb_s / (float(c[1]) / 8)
        (fast if rate >= need else slow).append(f"{c[0]} {rate:.1f} of {need:.1f}")
    return ("How to read it: a type reaches its roofline only if its kernel turns weights into products at least as "
            f"fast as memory delivers them: {quiet_gb_s:.0f} GB/s (one thread, quiet machine) divided by the bytes per "
            "weight. The in-cache table gives each kernel's rate (decode Gweights/s) against that need. "
            f"Fast enough: {', '.join(fast) or 'none'}. Compute-bound below the roofline on a quiet machine: "
            f"{', '.join(slow) or 'none'} (faster dequantizing kernels for these are open work).")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--models", default=os.path.expanduser(os.environ.get("MOE_BENCH_DIR", "~/.cache/moe-bench")) + "/wtypes")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3, help="moe bench runs per point; the best is kept")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "PERFORMANCE.md"))
    ap.add_argument("--quick", action="store_true", help="a small model (for trying the script, not for the table)")
    a = ap.parse_args()
    moe, maker, kern = (os.path.join(a.build, p) for p in ("moe", "bench/make_bench_model", "bench/bench_wtypes"))
    os.makedirs(a.models, exist_ok=True)
    size = ["--layers", "2", "--vocab", "2000"] if a.quick else []
    rows = []
    load_before = os.getloadavg()[0]
    for t in a.types.split(","):
        path = os.path.join(a.models, ("quick_" if a.quick else "") + t + ("" if t in ("bf16", "f8_e4m3_b128") else ".gguf"))
        if not os.path.exists(path):
            print(f"writing {path}", flush=True)
            sh([maker, path, "--type", t] + size)
        info = json.loads(sh([moe, "info", path, "--json"]))
        for th in a.threads.split(","):
            best = None
            for _ in range(a.reps):   # the machine is shared: keep the fastest of a few runs
                r = json.loads(sh([moe, "bench", path, "--no-mmap", "-t", th, "-p", str(a.prompt), "-n", str(a.gen), "--json"]))
                if best is None or r["decode_tok_s"] > best["decode_tok_s"]:
                    best = r
            roof = best["read_bandwidth_gb_s"] * 1e9 / info["bytes_per_token"]
            rows.append((t, th, info, best, roof))
            print(f"{t:14s} t={th} decode {best['decode_tok_s']:.2f} tok/s, roofline {roof:.2f} ({best['decode_tok_s'] / roof:.0%}), "
                  f"prefill {best['prefill_tok_s']:.1f} tok/s", flush=True)
    kernels = []
    for th in a.threads.split(","):
        kernels.append((th, "memory", sh([kern, "--threads", th, "--types", a.types, "--reps", "5"])))
        kernels.append((th, "cache", sh([kern, "--threads", th, "--types", a.types, "--reps", "20", "--rows", "128", "--budget-mib", "1"])))
    lines = ["<!-- wtypes: begin (written by bench/bench_wtypes.py; edits here are lost) -->", "",
             "## Weight types (docs/WEIGHT_TYPES.md) against the roofline", "",
             f"Regenerate with `python3 bench/bench_wtypes.py`. Machine: {machine()}. Date: "
             f"{datetime.date.today().isoformat()}{' (QUICK: small model, not representative)' if a.quick else ''}. "
             f"Load average {load_before:.1f} before the run and {os.getloadavg()[0]:.1f} after it: where other jobs "
             "share the machine, the read probe gives far less than the ~39 GB/s one thread reads on a quiet one, and "
             "the ratios to the probe of the same run are the figures to compare.", "",
             verdict(kernels), "",
             "The same random Mixtral-shaped model (mixtral2g's shape) in each type, `moe bench --no-mmap` (prefill "
             f"{a.prompt} tokens, decode {a.gen}), best of {a.reps} runs. Roofline = the read bandwidth `moe bench` "
             "measures in the same run / the bytes one decoded token reads (`moe info`).", "",
             "| type | bits/weight | MB/token | threads | read GB/s | roofline tok/s | decode tok/s | decode / roofline | prefill tok/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t, th, info, r, roof in rows:
        lines.append(f"| {t} | {BITS.get(t, '?')} | {info['bytes_per_token'] / 1e6:.0f} | {th} | {r['read_bandwidth_gb_s']:.1f} | "
                     f"{roof:.1f} | {r['decode_tok_s']:.2f} | {r['decode_tok_s'] / roof:.0%} | {r['prefill_tok_s']:.1f} |")
    lines += ["", "The kernels alone (`bench/bench_wtypes`): one-token products over 2048 x 2048 matrices cycled through "
              "512 MiB (from memory), next to a plain vector read of the same bytes; then 128 x 2048 matrices that stay "
              "in cache (the kernels' compute rate, which must exceed the read rate in weights for decode to reach "
              "the roofline). Prefill: 128 x rows per product.", ""]
    for th, where, table in kernels:
        lines += [f"{'From memory' if where == 'memory' else 'In cache'}, {th} thread(s):", "", table.strip(), ""]
    lines.append("<!-- wtypes: end -->")
    block = "\n".join(lines) + "\n"
    old = open(a.out).read() if os.path.exists(a.out) else ""
    b, e = "<!-- wtypes: begin", "<!-- wtypes: end -->"
    if b in old:
        new = old[:old.index(b)] + block + old[old.index(e) + len(e) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    tmp = a.out + ".tmp"
    open(tmp, "w").write(new)
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
