"""Perplexity and routed experts per token under dynamic routing: the table of docs/DYNAMIC.md.

The model: a qwen3_moe-layout model trained here by `moe train` on tinyshakespeare (bytes): 4 layers,
d-model 128, 16 experts top-4 of width 128 (renormalised), 400 steps, fixed seed; evaluated with
`moe eval` (--ctx 256, stride 128) on the held-out last 10% of the file (the split moe train held
out). Each row is one set of routing options; experts per token is what eval reports (routed experts
executed per MoE layer and token, averaged). The rows go between the markers of docs/DYNAMIC.md, the
raw numbers to bench/results/dynamic.json.
Usage: dynamic.py --moe build/moe [--work DIR] [--threads N] [--eval-tokens N] [--doc-only]"""
import argparse
import json
import os
import platform
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")

ROWS = [
    ("router's own (top-4)", []),
    ("--top-p 0.9", ["--top-p", "0.9"]),
    ("--top-p 0.8", ["--top-p", "0.8"]),
    ("--top-p 0.6", ["--top-p", "0.6"]),
    ("--top-p 0.4", ["--top-p", "0.4"]),
    ("--skip-threshold 0.05", ["--skip-threshold", "0.05"]),
    ("--skip-threshold 0.1", ["--skip-threshold", "0.1"]),
    ("--skip-threshold 0.2", ["--skip-threshold", "0.2"]),
    ("--skip-threshold 0.3", ["--skip-threshold", "0.3"]),
    ("--layer-k '*:3'", ["--layer-k", "*:3"]),
    ("--layer-k auto:3 (LExI)", ["--layer-k", "auto:3"]),
    ("--layer-k '*:2'", ["--layer-k", "*:2"]),
    ("--layer-k auto:2 (LExI)", ["--layer-k", "auto:2"]),
    ("--layer-k '*:16' --top-p 0.9", ["--layer-k", "*:16", "--top-p", "0.9"]),
    ("--capacity 1", ["--capacity", "1"]),
    ("--capacity 1 --reroute", ["--capacity", "1", "--reroute"]),
    ("--capacity 1.5", ["--capacity", "1.5"]),
]


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr.strip()[-600:]}")
    return p


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/moe-bench/dynamic"))
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "DYNAMIC.md"))
    ap.add_argument("--json", default=os.path.join(HERE, "results", "dynamic.json"))
    ap.add_argument("--doc-only", action="store_true", help="rewrite the table from --json without measuring")
    a = ap.parse_args()
    if a.doc_only:
        write_doc(json.load(open(a.json)), a.doc)
        return
    os.makedirs(a.work, exist_ok=True)
    data = os.path.join(SHARED, "tinyshakespeare.txt")
    text = open(data, "rb").read()
    model = os.path.join(a.work, "trained")
    train_s = None
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        t0 = time.time()
        run([a.moe, "train", "--data", data, "--out", model, "--d-model", 128, "--layers", 4, "--heads", 4,
             "--kv-heads", 2, "--head-dim", 32, "--experts", 16, "--top-k", 4, "--d-expert", 128, "--norm-topk", 1,
             "--router", "softmax_topk", "--layout", "qwen3_moe", "--seq-len", 128, "--batch", 8, "--steps", 400,
             "--lr", "3e-3", "--min-lr", "3e-4", "--eval-every", 0, "--save-every", 0, "--seed", 1, "-q", "-t", a.threads])
        train_s = time.time() - t0
    held = os.path.join(a.work, "held_bytes.txt")
    n_train = int(len(text) * 0.9)
    open(held, "w").write(" ".join(map(str, text[n_train:n_train + a.eval_tokens])))
    rows = []
    for label, opts in ROWS:
        ev = json.loads(run([a.moe, "eval", model, "--tokens-file", held, "--ctx", 256, "--json", "-t", a.threads, *opts]).stdout)
        rows.append({"label": label, "options": opts, **ev})
        print(f"{label:36s} perplexity {ev['perplexity']:.4f}  experts/token {ev['experts_per_token']:.3f}", flush=True)
    res = {"machine": machine(), "train_seconds": train_s, "eval_tokens": a.eval_tokens, "rows": rows}
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    json.dump(res, open(a.json, "w"), indent=1)
    write_doc(res, a.doc)


def write_doc(res, path):
    """The table between the markers of docs/DYNAMIC.md. Times are left out: this is no speed benchmark."""
    rows, m = res["rows"], res["machine"]
    base = rows[0]
    lines = [f"Measured on {m['cpu']} ({m['cores']} cores), {m['system']}; {base['scored']} held-out bytes of "
             f"tinyshakespeare scored, ctx 256, stride 128 (so a capacity's batch is eval's chunk of 64 tokens). "
             f"Model: trained by `moe train` (qwen3_moe layout, 4 layers, d-model 128, 16 experts top-4, "
             f"renormalised, 400 steps). Regenerate: `python3 bench/dynamic.py --moe build/moe` "
             f"(raw numbers: bench/results/dynamic.json).", "",
             "| options | perplexity | vs. own | routed experts / token |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['perplexity']:.4f} | {100 * (r['perplexity'] / base['perplexity'] - 1):+.2f}% | "
                     f"{r['experts_per_token']:.3f} |")
    doc = open(path).read()
    b, e = "<!-- dynamic-table -->", "<!-- /dynamic-table -->"
    i, j = doc.index(b) + len(b), doc.index(e)
    open(path, "w").write(doc[:i] + "\n" + "\n".join(lines) + "\n" + doc[j:])

if __name__ == "__main__":
    main()
