"""Offload benchmark: decode speed of models whose experts are several times the memory budget.

For each model, every variant decodes the same fixed token sequence one token per step (teacher-forced:
`moe logits --stepwise --stats`), and the decode rate is read from the stats-json line. The sequence is
held-out text for the trained model and random ids for the random one: greedy generation from these
small models falls into loops that repeat the same experts and would flatter every cache. Variants:
  mmap           all weights mmapped (moe's resident store), run inside a memory cgroup limited to the
                 same total as the offloaded runs: what llama.cpp does when a model does not fit;
  on demand      --mem-budget B --cache none: every expert use reads it (no cache, no prefetch);
  POLICY         --mem-budget B --cache POLICY, for lru, lfu, activation, fate;
  POLICY + pf    the same with --prefetch (this layer's reads overlapped with compute, the next layer's
                 experts predicted by its router applied to the current hidden state);
  POLICY + fitted pf  the same with --predictor DIR/moe_predictor.safetensors (if present): the next
                 layer's experts predicted by maps fitted on calibration text (`moe fit-predictor`);
  lru + async    --prefetch --no-predict: only this layer's reads overlapped, no prediction.
Offloaded runs use --direct-io so that the page cache cannot hide the disk, and run in the same cgroup
(so they demonstrably fit). Before every run the model file is dropped from the page cache with
posix_fadvise(DONTNEED). Variants run round-robin, `--repeats` times; the table shows the median rate,
its ratio to the mmap median, and the store's counters (from the last repeat). Every variant must
produce byte-identical logits (checked; the table says so).

Writes the tables between the bench markers of docs/OFFLOAD.md and the raw runs to a JSON file.
Usage: offload_bench.py --moe build/moe --model NAME=DIR:BUDGET ... [--tokens N] [--repeats R] [-t T]"""
import argparse
import hashlib
import json
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import time

POLICIES = ["lru", "lfu", "activation", "fate"]


def parse_bytes(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", s)
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


PREDICTOR = "moe_predictor.safetensors"


def model_files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".safetensors") and f != PREDICTOR)


def expert_bytes(d):
    tot = 0
    for p in model_files(d):
        for k, v in header(p).items():
            if k != "__metadata__" and ".experts." in k:
                tot += v["data_offsets"][1] - v["data_offsets"][0]
    return tot


def drop_cache(d):
    for p in model_files(d):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_fraction(d):
    """Fraction of the model's pages in the page cache, from fincore (None if unavailable)."""
    try:
        tot = res = 0
        for p in model_files(d):
            out = subprocess.run(["fincore", "-b", "-n", "-o", "RES,SIZE", p], capture_output=True, text=True).stdout.split()
            res += int(out[0])
            tot += int(out[1])
        return res / tot if tot else 0.0
    except Exception:
        return None


class Cgroup:
    """A memory-limited cgroup (v1 or v2) that child processes join before exec."""

    def __init__(self, limit):
        self.path = None
        self.limit = limit
        try:
            v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
            if v2:
                rel = open("/proc/self/cgroup").read().split("::")[-1].strip()
                base = "/sys/fs/cgroup" + rel
                key = "memory.max"
            else:
                line = next(l for l in open("/proc/self/cgroup") if re.match(r"\d+:memory:", l))
                base = "/sys/fs/cgroup/memory" + line.split(":", 2)[2].strip()
                key = "memory.limit_in_bytes"
            path = os.path.join(base, f"moe_offload_bench_{os.getpid()}")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, key), "w") as f:
                f.write(str(limit))
            self.path, self.v2 = path, v2
        except Exception as e:
            self.error = str(e)

    def join(self):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def peak(self):
        for key in ("memory.max_usage_in_bytes", "memory.peak"):
            p = os.path.join(self.path, key)
            if os.path.exists(p):
                return int(open(p).read())
        return None

    def reset_peak(self):
        """Uncharge what earlier runs left (page cache of the model) and restart the peak."""
        if not self.v2:
            try:
                open(os.path.join(self.path, "memory.force_empty"), "w").write("0")
            except OSError:
                pass
        p = os.path.join(self.path, "memory.max_usage_in_bytes")
        if os.path.exists(p):
            open(p, "w").write("0")

    def remove(self):
        if self.path:
            try:
                if not self.v2:
                    open(os.path.join(self.path, "memory.force_empty"), "w").write("0")
                os.rmdir(self.path)
            except OSError:
                pass


def run_variant(moe, d, flags, seq, threads, cg, timeout, out_file):
    cmd = [moe, "logits", d, "--tokens", ",".join(map(str, seq)), "--stepwise", "-o", out_file, "--stats",
           "-t", str(threads)] + flags
    drop_cache(d)
    if cg:
        cg.reset_peak()
    t0 = time.time()
    flt0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_majflt
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=cg.join if cg else None)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return {"error": f"timeout after {timeout} s"}
    majflt = resource.getrusage(resource.RUSAGE_CHILDREN).ru_majflt - flt0
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {err.strip()[-300:]}"}
    stats = [json.loads(l[len("stats-json "):]) for l in err.splitlines() if l.startswith("stats-json ")]
    dec = next(s for s in stats if s["phase"] == "stepwise")
    digest = hashlib.sha256(open(out_file, "rb").read()).hexdigest()
    return {"tokens": digest, "decode": dec, "tok_s": dec["tokens"] / dec["seconds"], "wall": time.time() - t0,
            "major_faults": majflt,
            "cgroup_peak": cg.peak() if cg else None}


def bench_model(a, name, d, budget):
    st_bytes = sum(os.path.getsize(p) for p in model_files(d))
    exp = expert_bytes(d)
    non_expert = st_bytes - exp
    limit = budget + non_expert + a.overhead
    cfg = json.load(open(os.path.join(d, "config.json")))
    vocab = cfg["vocab_size"]
    tok_file = os.path.join(d, "test_tokens.txt")
    if os.path.exists(tok_file):
        seq = [int(x) for x in open(tok_file).read().split()[:a.tokens]]
    else:
        import random
        rnd = random.Random(5)
        seq = [rnd.randrange(vocab) for _ in range(a.tokens)]
    variants = [("mmap (cgroup)", None)]
    variants.append(("on demand", ["--cache", "none"]))
    for pol in POLICIES:
        variants.append((pol, ["--cache", pol]))
    for pol in POLICIES:
        variants.append((pol + " + prefetch", ["--cache", pol, "--prefetch"]))
    pred = os.path.join(d, PREDICTOR)
    if os.path.exists(pred):
        for pol in POLICIES:
            variants.append((pol + " + fitted prefetch", ["--cache", pol, "--prefetch", "--predictor", pred]))
    variants.append(("lru + async", ["--cache", "lru", "--prefetch", "--no-predict"]))
    cg = Cgroup(limit)
    if not cg.path:
        print(f"{name}: no memory cgroup ({cg.error}); the mmap baseline cannot be limited and is skipped", flush=True)
    print(f"{name}: experts {exp / 2**20:.0f} MiB, budget {budget / 2**20:.0f} MiB ({exp / budget:.1f}x), non-expert "
          f"{non_expert / 2**20:.0f} MiB, cgroup limit {limit / 2**20:.0f} MiB", flush=True)
    runs = {v[0]: [] for v in variants}
    for r in range(a.repeats):
        for label, flags in variants:
            if flags is None and not cg.path:
                continue
            f = [] if flags is None else ["--mem-budget", str(budget), "--direct-io", "--io-threads", str(a.io_threads)] + flags
            res = run_variant(a.moe, d, f, seq, a.threads, cg if cg.path else None, a.timeout,
                              os.path.join(a.work, f"{name}.logits.json"))
            runs[label].append(res)
            msg = res.get("error") or f"{res['tok_s']:.2f} tok/s"
            print(f"  [{r + 1}/{a.repeats}] {label:24s} {msg}", flush=True)
    cg.remove()
    return {"name": name, "dir": d, "budget": budget, "expert_bytes": exp, "non_expert_bytes": non_expert,
            "cgroup_limit": limit if cg.path else None, "decode_tokens": len(seq),
            "sequence": "held-out text" if os.path.exists(tok_file) else "random ids",
            "config": {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_experts", "num_experts_per_tok",
                                               "moe_intermediate_size", "vocab_size")},
            "dtype": next(v["dtype"] for k, v in header(model_files(d)[0]).items() if ".experts." in k),
            "runs": runs}


def table(res):
    runs = res["runs"]
    ok = {k: [r for r in v if "error" not in r] for k, v in runs.items()}
    med = {k: statistics.median(r["tok_s"] for r in v) for k, v in ok.items() if v}
    base = med.get("mmap (cgroup)")
    toks = {r["tokens"] for v in ok.values() for r in v}
    c = res["config"]
    lines = [f"### {res['name']}", "",
             f"qwen3_moe, {c['num_hidden_layers']} layers, {c['num_experts']} experts (top-{c['num_experts_per_tok']}), "
             f"hidden {c['hidden_size']}, expert FFN {c['moe_intermediate_size']}, {res['dtype']}: "
             f"experts {res['expert_bytes'] / 2**20:.0f} MiB on disk, budget {res['budget'] / 2**20:.0f} MiB "
             f"({res['expert_bytes'] / res['budget']:.1f}x smaller), non-expert weights {res['non_expert_bytes'] / 2**20:.0f} MiB, "
             + (f"cgroup limit {res['cgroup_limit'] / 2**20:.0f} MiB." if res["cgroup_limit"] else "no cgroup available.")
             + f" {res['decode_tokens']} decode steps over {res['sequence']}, median of "
             f"{max(len(v) for v in runs.values())} runs. Logits identical across variants: "
             f"{'yes' if len(toks) == 1 else 'NO (' + str(len(toks)) + ' different outputs)'}.", "",
             "| variant | decode tok/s | vs mmap | hit rate | prefetch accuracy | MiB read/token | I/O stall ms/token | major faults/run | cgroup peak MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k, v in runs.items():
        if not v:
            continue
        if not ok[k]:
            lines.append(f"| {k} | {v[-1]['error']} | | | | | | | |")
            continue
        s = ok[k][-1]["decode"]
        ratio = f"{med[k] / base:.2f}x" if base else "n/a"
        pk = max((r["cgroup_peak"] or 0) for r in ok[k]) / 2**20
        if k.startswith("mmap"):
            lines.append(f"| {k} | {med[k]:.2f} | 1.00x | | | | | {ok[k][-1]['major_faults']} | {pk:.0f} |")
        else:
            acc = f"{100 * s['prefetch_accuracy']:.1f}%" if s["needed_predicted"] else "-"
            lines.append(f"| {k} | {med[k]:.2f} | {ratio} | {100 * s['hit_rate']:.1f}% | {acc} | "
                         f"{s['bytes_per_token'] / 2**20:.2f} | {s['stall_ms_per_token']:.1f} | {ok[k][-1]['major_faults']} | {pk:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moe", required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=DIR:BUDGET, e.g. trained=/tmp/m:32M")
    ap.add_argument("--tokens", type=int, default=64, help="decode steps")
    ap.add_argument("--work", default="/tmp")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", "-t", type=int, default=1)
    ap.add_argument("--io-threads", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--overhead", type=parse_bytes, default=parse_bytes("24M"),
                    help="cgroup limit beyond budget + non-expert weights: binary, libraries, scratch, KV cache")
    ap.add_argument("--doc", default=os.path.join(os.path.dirname(__file__), "..", "docs", "OFFLOAD.md"))
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "offload.json"))
    a = ap.parse_args()
    results = []
    for spec in a.model:
        name, rest = spec.split("=", 1)
        d, budget = rest.rsplit(":", 1)
        results.append(bench_model(a, name, d, parse_bytes(budget)))
    load = os.getloadavg()
    stamp = (f"Generated by `bench/offload_bench.py` on {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
             f"-t {a.threads}, {a.io_threads} reader threads; load average at the end {load[0]:.1f} "
             f"(other jobs shared the machine).\n\n")
    body = stamp + "\n".join(table(r) for r in results)
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    json.dump({"stamp": stamp.strip(), "results": results}, open(a.json, "w"), indent=1)
    doc = open(a.doc).read() if os.path.exists(a.doc) else "<!-- bench:begin -->\n<!-- bench:end -->\n"
    b, e = doc.index("<!-- bench:begin -->"), doc.index("<!-- bench:end -->")
    doc = doc[:b] + "<!-- bench:begin -->\n" + body + doc[e:]
    open(a.doc, "w").write(doc)
    print(body)


if __name__ == "__main__":
    main()
