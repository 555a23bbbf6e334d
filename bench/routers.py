#!/usr/bin/env python3
"""routers.py - the router benchmark: every router of the zoo trained for the same number of steps
on tinyshakespeare (byte-level, first 90% training, last 10% held out) with the same active FFN
width per token, two dense baselines, and the training throughput of `moe train` against the same
model trained by PyTorch on the CPU with the same number of threads, all in one run. Rewrites the
results section of docs/ROUTERS.md (between the bench markers) and prints it.

Equal active FLOPs: every MoE row applies experts of total width 256 per token (top-2 of width 128,
top-1 of width 256, DeepSeek-style top-3 of width 64 plus one shared expert of width 64, Soft MoE
32 slots of width 128 per 128-token sequence); a dense FFN of width 256 has the same FFN FLOPs per
token ("dense, same active"), one of width 1024 the same parameters as the experts ("dense, same
total"). Variable-count routers (expert_choice, top_p, sparsemax) are reported with their measured
experts per token. Soft MoE sees the future tokens of its sequence (docs/ROUTERS.md), so its loss is
not comparable; it is marked.

Throughput: moe train and bench/train_torch.py alternate for a few rounds of short runs of the
softmax_topk model; the best tokens/s of each is kept (the machine may be shared; the best run is
the least disturbed one), and their ratio is reported. Both run with OMP_WAIT_POLICY=passive.

Usage: python3 bench/routers.py [--steps 300] [--threads 2] [--moe build/moe] [--python VENV_PYTHON]
       [--data FILE] [--no-write]"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Both trainers use OpenMP; passive waiting keeps idle threads from spinning on a shared machine
# (moe train sets it for itself anyway; PyTorch gets the same environment).
ENV = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))
ROOT = os.path.dirname(HERE)

BASE = ["--d-model", "128", "--layers", "4", "--heads", "4", "--seq-len", "128", "--batch", "16",
        "--warmup", "30", "--lr", "2e-3", "--min-lr", "2e-4", "--eval-every", "0", "--eval-batches", "16",
        "--seed", "1337"]

ROWS = [
    ("softmax_topk (renormalised)", ["--router", "softmax_topk", "--experts", "8", "--top-k", "2", "--d-expert", "128"]),
    ("softmax_topk (not renormalised)", ["--router", "softmax_topk", "--experts", "8", "--top-k", "2",
                                         "--d-expert", "128", "--norm-topk", "0"]),
    ("switch, capacity 1.25", ["--router", "switch", "--experts", "4", "--top-k", "1", "--d-expert", "256",
                               "--capacity-factor", "1.25"]),
    ("expert_choice, capacity 1.0", ["--router", "expert_choice", "--experts", "8", "--top-k", "2", "--d-expert", "128",
                                     "--capacity-factor", "1.0"]),
    ("base", ["--router", "base", "--experts", "4", "--top-k", "1", "--d-expert", "256"]),
    ("soft, 32 slots (sees the future)", ["--router", "soft", "--experts", "8", "--top-k", "1", "--d-expert", "128",
                                          "--slots", "32"]),
    ("hash", ["--router", "hash", "--experts", "4", "--top-k", "1", "--d-expert", "256"]),
    ("thor", ["--router", "thor", "--experts", "4", "--top-k", "1", "--d-expert", "256"]),
    ("deepseek_v3: 16 x 64 top-3 + 1 shared", ["--router", "deepseek_v3", "--experts", "16", "--top-k", "3",
                                               "--d-expert", "64", "--shared", "1", "--balance-loss", "0",
                                               "--seq-balance-loss", "1e-4"]),
    ("top_p, p = 0.5", ["--router", "top_p", "--experts", "8", "--top-k", "2", "--d-expert", "128", "--top-p", "0.5"]),
    ("sparsemax", ["--router", "sparsemax", "--experts", "8", "--top-k", "2", "--d-expert", "128"]),
    ("aoe, rank 32", ["--router", "aoe", "--experts", "8", "--top-k", "2", "--d-expert", "128", "--aoe-rank", "32"]),
]
DENSE = [
    ("dense, same active (FFN 256)", ["--experts", "0", "--d-ff", "256"]),
    ("dense, same total (FFN 1024)", ["--experts", "0", "--d-ff", "1024"]),
]


def run_moe(moe, data, args, steps, threads, out):
    cmd = [moe, "train", "--data", data, "--out", out, "--json", "--quiet", "-t", str(threads), "--steps", str(steps)]
    r = subprocess.run(cmd + BASE + args, capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        sys.exit(f"routers.py: {' '.join(cmd + args)} failed: {r.stderr.strip()}")
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    tail = lines[-max(1, len(lines) // 10):]
    mean = lambda k: sum(l[k] for l in tail) / len(tail)
    return {"val": lines[-1]["val_loss"], "train": mean("loss"), "tok_s": lines[-1]["tok_per_s"],
            "cv": mean("load_cv"), "dropped": mean("dropped"), "entropy": mean("entropy"),
            "per_token": mean("experts_per_token"), "out": out}


def info(moe, out):
    r = subprocess.run([moe, "info", out, "--json"], capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--moe", default=os.path.join(ROOT, "build", "moe"))
    ap.add_argument("--python", default=os.path.expanduser("~/.cache/moe-venv/bin/python"))
    ap.add_argument("--data", default="/work/shared/data/tinyshakespeare.txt")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (moe and PyTorch alternate)")
    ap.add_argument("--tput-steps", type=int, default=40)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="moe_bench_")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    t_start = time.time()
    load0 = os.getloadavg()[0]
    results = []
    for i, (name, args) in enumerate(ROWS + DENSE):
        out = os.path.join(work, f"run{i}")
        print(f"[{i + 1}/{len(ROWS) + len(DENSE)}] {name} ...", file=sys.stderr, flush=True)
        r = run_moe(a.moe, a.data, args, a.steps, a.threads, out)
        r["name"], r["dense"] = name, name.startswith("dense")
        inf = info(a.moe, out)
        r["params"], r["active"] = inf.get("params", 0), inf.get("active_params", 0)
        results.append(r)
    # throughput against PyTorch: the first row's model, alternating short runs
    cfg = os.path.join(results[0]["out"], "train.json")
    best_moe = best_torch = 0.0
    torch_loss = None
    for k in range(a.rounds):
        print(f"throughput round {k + 1}/{a.rounds} ...", file=sys.stderr, flush=True)
        r = run_moe(a.moe, a.data, ROWS[0][1], a.tput_steps, a.threads, os.path.join(work, "tput"))
        best_moe = max(best_moe, r["tok_s"])
        t = subprocess.run([a.python, os.path.join(HERE, "train_torch.py"), "--config", cfg, "--data", a.data,
                            "--steps", str(a.tput_steps), "--threads", str(a.threads)], capture_output=True, text=True, env=ENV)
        if t.returncode != 0:
            sys.exit(f"routers.py: train_torch.py failed: {t.stderr.strip()}")
        tj = json.loads(t.stdout.strip().splitlines()[-1])
        best_torch = max(best_torch, tj["tok_per_s"])
        torch_version = tj["torch"]
    # the PyTorch model's loss after the same number of steps (a check that the peer trains alike)
    t = subprocess.run([a.python, os.path.join(HERE, "train_torch.py"), "--config", cfg, "--data", a.data,
                        "--steps", str(a.steps), "--threads", str(a.threads)], capture_output=True, text=True, env=ENV)
    if t.returncode == 0:
        torch_loss = json.loads(t.stdout.strip().splitlines()[-1])["train_loss"]
    elapsed = time.time() - t_start
    load1 = os.getloadavg()[0]

    dense_active = next(r for r in results if r["name"].startswith("dense, same active"))
    lines = []
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines.append(f"Generated by `python3 bench/routers.py --steps {a.steps} --threads {a.threads}` on "
                 f"{datetime.date.today().isoformat()} (commit {commit or '?'}, {cpu}, {os.cpu_count()} CPUs, "
                 f"load average {load0:.1f} at the start and {load1:.1f} at the end; {elapsed / 60:.0f} minutes).")
    lines.append("")
    lines.append(f"Model: 4 layers, d = 128, 4 heads, byte vocabulary; {a.steps} steps of 16 x 128 tokens "
                 f"({a.steps * 2048 / 1e6:.2f} M tokens), AdamW lr 2e-3 cosine to 2e-4, balance loss 0.01, z-loss 0.001 "
                 "(DeepSeek: bias balancing and a 1e-4 sequence loss instead). Held-out loss: 16 batches of the last 10% "
                 "(nats per byte). Load CV, dropped % and entropy: mean over MoE layers and the last 10% of steps.")
    lines.append("")
    lines.append("| model | held-out loss | train loss | tokens/s | experts/token | load CV | dropped % | router entropy | params (active) | beats dense, same active? |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    wins, total = 0, 0
    for r in results:
        beat = ""
        if not r["dense"]:
            comparable = "future" not in r["name"]
            better = r["val"] < dense_active["val"]
            if comparable:
                total += 1
                wins += better
            beat = ("yes" if better else "no") + ("" if comparable else " (not comparable)")
        moe_cols = ("-", "-", "-", "-") if r["dense"] else (f"{r['per_token']:.2f}", f"{r['cv']:.3f}",
                                                             f"{100 * r['dropped']:.2f}", f"{r['entropy']:.3f}")
        lines.append(f"| {r['name']} | {r['val']:.4f} | {r['train']:.4f} | {r['tok_s']:.0f} | {moe_cols[0]} | {moe_cols[1]} | "
                     f"{moe_cols[2]} | {moe_cols[3]} | {r['params'] / 1e6:.2f} M ({r['active'] / 1e6:.2f} M) | {beat} |")
    lines.append("")
    lines.append(f"**{wins} of {total} comparable MoE rows reach a lower held-out loss than the dense model with the same "
                 f"active FFN FLOPs** ({dense_active['val']:.4f}).")
    lines.append("")
    ratio = best_moe / best_torch if best_torch else float("nan")
    lines.append(f"**Training throughput, softmax_topk model, {a.threads} threads: moe {best_moe:.0f} tokens/s, PyTorch "
                 f"{torch_version} (CPU) {best_torch:.0f} tokens/s: {ratio:.2f}x** (best of {a.rounds} alternating runs of "
                 f"{a.tput_steps} steps each; target 1.5x)." + (f" PyTorch's train loss after {a.steps} steps: {torch_loss:.4f} "
                 f"(moe: {results[0]['train']:.4f})." if torch_loss is not None else ""))
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        path = os.path.join(ROOT, "docs", "ROUTERS.md")
        doc = open(path).read()
        new = re.sub(r"<!-- bench:begin -->.*<!-- bench:end -->", "<!-- bench:begin -->\n" + text + "\n<!-- bench:end -->",
                     doc, flags=re.S)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        print(f"wrote {path}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
