"""`moe trace` and `moe stats` against Hugging Face transformers and against an independent recomputation.

1. For tiny random models of every MoE family: the experts and combine weights in the trace (CSV export)
   are the ones transformers' own router chooses for each layer and position (weights within 1e-5), and
   each token's entropy is that of transformers' router scores (normalised to sum 1).
2. Every number of stats.json (load, weight sums, entropies, co-activation and transition matrices,
   preferred tokens, experts per token) is recomputed here from the CSV export alone and must agree
   (counts exactly, sums within 1e-6 relative).
3. The pictures are PNG files of the stated size with a colour scale; report.html is self-contained (images
   inline, no script, no external reference).
4. --text with the real Qwen3 tokenizer: tokens.csv holds the tokenizer's ids and each id's decoded text.
5. Hostile trace files (truncated at many lengths, bytes flipped, wrong magic, version, counts) are refused
   by `moe stats` with exit code 2 and one line naming the file, never a crash."""
import argparse
import csv
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np

import hf_cases

CASES = ["mixtral_e8k2", "qwen2_moe_shared", "qwen3_moe_e16k4", "olmoe_e8k2", "deepseek_v2_group",
         "deepseek_v3_base", "qwen3_moe_bf16", "mixtral_fused_v5", "qwen3_moe_sharded"]


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def close(a, b, rel=1e-6):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def compare_stats(got, want, name):
    bad = []
    if got["tokens"] != want["tokens"] or not close(got["experts_per_token"], want["experts_per_token"]):
        bad.append(f"{name}: tokens/experts_per_token {got['tokens']}/{got['experts_per_token']} vs {want['tokens']}/{want['experts_per_token']}")
    for g, w in zip(got["layers"], want["layers"]):
        l = w["layer"]
        for key in ("layer", "load", "entropy_tokens", "coactivation", "transition", "transition_to"):
            if g[key] != w[key]:
                bad.append(f"{name} layer {l}: {key} differs")
        for key in ("entropy_mean", "load_entropy"):
            if not close(g[key], w[key]):
                bad.append(f"{name} layer {l}: {key} {g[key]} vs {w[key]}")
        if not all(close(a, b) for a, b in zip(g["weight_sum"], w["weight_sum"])):
            bad.append(f"{name} layer {l}: weight_sum differs")
        for e, (gt, wt) in enumerate(zip(g["top_tokens"], w["top_tokens"])):
            if [x[:2] for x in gt] != [x[:2] for x in wt] or not all(close(x[2], y[2]) for x, y in zip(gt, wt)):
                bad.append(f"{name} layer {l} expert {e}: top tokens {gt} vs {wt}")
                break
    if len(got["layers"]) != len(want["layers"]):
        bad.append(f"{name}: {len(got['layers'])} layers vs {len(want['layers'])}")
    return bad


def png_size(path):
    b = open(path, "rb").read(24)
    if b[:8] != b"\x89PNG\r\n\x1a\n" or b[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG")
    return struct.unpack(">II", b[16:24])


def check_pictures(d, n_layers, E):
    bad = []
    files = ["load.png"] + ([f"coact_L{l}.png" for l in n_layers] + [f"trans_L{l}.png" for l in n_layers[:-1]])
    for f in files:
        try:
            w, h = png_size(os.path.join(d, f))
            if w < 100 or h < 100:
                bad.append(f"{d}/{f}: {w}x{h} is too small to read")
        except Exception as e:
            bad.append(str(e))
    html = open(os.path.join(d, "report.html"), encoding="utf-8").read()
    if html.count("data:image/png;base64,") != len(files):
        bad.append(f"{d}/report.html: {html.count('data:image/png;base64,')} inline images, expected {len(files)}")
    for ext in ('src="http', "src='http", "<script", "<link", "url(", "@import"):
        if ext in html:
            bad.append(f"{d}/report.html: external reference or script ({ext})")
    if "<svg" not in html:
        bad.append(f"{d}/report.html: no entropy chart")
    return bad


def hostile(moe, work, good):
    """Damaged traces: exit 2, one line naming the file."""
    bad = []
    data = open(good, "rb").read()
    d = os.path.join(work, "hostile")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    variants = [("empty", b""), ("magic", b"XOETRACE" + data[8:]), ("version", data[:8] + struct.pack("<I", 2) + data[12:]),
                ("tail", data + b"\0"), ("experts0", data[:24] + struct.pack("<I", 0) + data[28:]),
                ("experts_small", data[:24] + struct.pack("<I", 1) + data[28:]),
                ("tokens_big", data[:32] + struct.pack("<Q", 1 << 40) + data[40:]),
                ("slots_big", data[:28] + struct.pack("<I", 1 << 20) + data[32:]),
                ("layers_zero", data[:16] + struct.pack("<I", 0) + data[20:])]
    for cut in sorted({1, 8, 12, 63, 64, 65, len(data) // 3, len(data) // 2, len(data) - 1}):
        variants.append((f"cut{cut}", data[:cut]))
    rng = np.random.default_rng(5)
    for i in range(40):  # single-byte corruptions in the header and records
        b = bytearray(data)
        pos = int(rng.integers(0, min(len(b), 400)))
        b[pos] ^= int(rng.integers(1, 256))
        variants.append((f"flip{i}", bytes(b)))
    for name, blob in variants:
        path = os.path.join(d, f"{name}.bin")
        open(path, "wb").write(blob)
        p = run([moe, "stats", path, "--out", os.path.join(d, "out_" + name)], check=False)
        lines = p.stderr.strip().splitlines()
        if name.startswith("flip") and p.returncode == 0:
            continue  # a flip in a weight or entropy may leave a valid trace
        if p.returncode != 2 or len(lines) != 1 or path not in lines[0]:
            bad.append(f"hostile trace {name}: exit {p.returncode}, stderr {p.stderr.strip()[:200]!r}")
    return bad, len(variants)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    failures = []
    cases = {c[0]: c for c in hf_cases.CASES}
    good_trace = None
    for name in CASES:
        try:
            case = cases[name]
            d, tokens, _, routes, _ = hf_cases.build_case(case, args.work)
            cfg = json.load(open(os.path.join(d, "config.json")))
            tf = os.path.join(args.work, f"{name}.tokens.txt")
            open(tf, "w").write(" ".join(map(str, tokens)))
            out = os.path.join(args.work, f"{name}.trace")
            shutil.rmtree(out, ignore_errors=True)
            run([args.moe, "trace", d, "--tokens-file", tf, "--out", out])
            rows = read_csv(os.path.join(out, "routes.csv"))
            ent = {(int(r["layer"]), int(r["token"])): float(r["entropy"]) for r in read_csv(os.path.join(out, "entropy.csv"))}
            got = defaultdict(dict)
            for r in rows:
                got[(int(r["layer"]), int(r["pos"]))][int(r["expert"])] = float(r["weight"])
            mism = 0
            for (l, t), (idx, w, scores) in routes.items():
                g = got.get((l, t), {})
                want = dict(zip(idx, w))
                if set(g) != set(want) or any(abs(g[e] - want[e]) > 1e-5 * max(1, abs(want[e])) for e in want):
                    mism += 1
                s = np.array(scores, dtype=np.float64)
                p = s / s.sum()
                h = float(-(p[p > 0] * np.log(p[p > 0])).sum())
                if abs(ent[(l, t)] - h) > 1e-4:
                    mism += 1
            if mism or len(got) != len(routes):
                failures.append(f"{name}: {mism} of {len(routes)} (layer, position) routes or entropies differ from transformers")
            # statistics over a longer random sequence, several windows
            rng = np.random.default_rng(11)
            ids = rng.integers(0, cfg["vocab_size"], size=300).tolist()
            tf2 = os.path.join(args.work, f"{name}.long.txt")
            open(tf2, "w").write(",".join(map(str, ids)))
            out2 = os.path.join(args.work, f"{name}.trace_long")
            shutil.rmtree(out2, ignore_errors=True)
            run([args.moe, "trace", d, "--tokens-file", tf2, "--out", out2, "--ctx", "64"])
            run([args.moe, "stats", out2])
            st = json.load(open(os.path.join(out2, "stats.json")))
            E = st["experts"]
            failures += compare_stats(st, recompute(out2, E), name)
            failures += check_pictures(out2, [L["layer"] for L in st["layers"]], E)
            good_trace = good_trace or os.path.join(out2, "trace.bin")
            print(f"{name:22s} trace = transformers routes on {len(routes)} (layer, position) pairs; stats recomputed "
                  f"from CSV over {st['tokens']} tokens; {st['experts_per_token']:.2f} experts/token", flush=True)
        except Exception as e:
            failures.append(f"{name}: {e}")
            print(f"{name}: ERROR {e}", flush=True)
    # --text with a real tokenizer: ids and texts
    try:
        from tokenizers import Tokenizer
        shared = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")
        tj = os.path.join(shared, "tokenizers", "qwen3", "tokenizer.json")
        text = open(os.path.join(shared, "tinyshakespeare.txt"), encoding="utf-8").read()[:600]
        case = ("qwen3_moe_trace_text", "qwen3_moe", hf_cases.C(vocab_size=151936, hidden_size=32, intermediate_size=16,
                num_hidden_layers=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, head_dim=8), "f32", 3)
        d, _, _, _, _ = hf_cases.build_case(case, args.work)
        shutil.copy(tj, os.path.join(d, "tokenizer.json"))
        txt = os.path.join(args.work, "trace_text.txt")
        open(txt, "w", encoding="utf-8").write(text)
        tk = Tokenizer.from_file(tj)
        ids = tk.encode(text, add_special_tokens=False).ids
        out = os.path.join(args.work, "text.trace")
        shutil.rmtree(out, ignore_errors=True)
        run([args.moe, "trace", d, "--text", txt, "--out", out, "--ctx", "50"])
        run([args.moe, "stats", out])
        toks = read_csv(os.path.join(out, "tokens.csv"))
        got_ids = [int(r["token_id"]) for r in toks]
        texts_bad = [r for r in toks if r["text"] != tk.decode([int(r["token_id"])], skip_special_tokens=False)]
        if got_ids != ids or texts_bad:
            failures.append(f"trace --text: ids equal {got_ids == ids}, {len(texts_bad)} texts differ, e.g. {texts_bad[:1]}")
        if [int(r["pos"]) for r in toks] != [i % 50 for i in range(len(ids))]:
            failures.append("trace --text: positions are not those of windows of 50")
        html = open(os.path.join(out, "report.html"), encoding="utf-8").read()
        if "&quot;" not in html:
            failures.append("trace --text: no token texts in the report")
        print(f"trace --text: {len(ids)} tokens with the Qwen3 tokenizer, ids and texts as tokenizers decodes them", flush=True)
    except Exception as e:
        failures.append(f"trace --text: {e}")
    # hostile traces and bad flags
    try:
        if good_trace:
            bad, n = hostile(args.moe, args.work, good_trace)
            failures += bad
            print(f"hostile traces: {n} refused cleanly" if not bad else f"hostile traces: {len(bad)} problems", flush=True)
        d = os.path.join(args.work, "qwen3_moe_e16k4")
        tf = os.path.join(args.work, "qwen3_moe_e16k4.tokens.txt")
        dense, _, _, _, _ = hf_cases.build_case(cases["llama_gqa"], args.work)
        open(os.path.join(args.work, "notadir"), "w").write("x")
        for argv, code, msg in [
            (["trace", d, "--tokens-file", tf], 1, "--out DIR is required"),
            (["trace", d, "--out", os.path.join(args.work, "x")], 1, "exactly one of"),
            (["trace", dense, "--tokens-file", tf, "--out", os.path.join(args.work, "dense.trace")], 1, "no MoE layers"),
            (["trace", d, "--tokens-file", tf, "--out", os.path.join(args.work, "notadir")], 1, "not a folder"),
            (["stats", os.path.join(args.work, "missing")], 2, "missing"),
        ]:
            p = run([args.moe] + argv, check=False)
            if p.returncode != code or msg not in p.stderr:
                failures.append(f"moe {' '.join(argv)}: exit {p.returncode} ({p.stderr.strip()[:200]}), expected {code} '{msg}'")
    except Exception as e:
        failures.append(f"refusals: {e}")
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("traces match transformers' routing; statistics match their recomputation from the CSV export")


def recompute(d, E):
    """Every statistic of stats.json from routes.csv, entropy.csv and tokens.csv alone."""
    ent = read_csv(f"{d}/entropy.csv")
    toks = read_csv(f"{d}/tokens.csv")
    routes = read_csv(f"{d}/routes.csv")
    T = len(toks)
    tok_id = [int(r["token_id"]) for r in toks]
    layers = sorted({int(r["layer"]) for r in ent})
    sets = defaultdict(set)
    wsum = defaultdict(float)
    for r in routes:
        l, t, e = int(r["layer"]), int(r["token"]), int(r["expert"])
        sets[(l, t)].add(e)
        wsum[(l, e)] += float(r["weight"])
    occ = Counter(tok_id)
    out = {"tokens": T, "layers": []}
    used = 0
    for li, l in enumerate(layers):
        load = [0] * E
        coact = np.zeros((E, E), dtype=np.int64)
        trans = np.zeros((E, E), dtype=np.int64)
        pairs = Counter()
        for t in range(T):
            s = sets[(l, t)]
            used += len(s)
            for a in s:
                load[a] += 1
                pairs[(a, tok_id[t])] += 1
                for b in s:
                    coact[a, b] += 1
            if li + 1 < len(layers):
                for a in s:
                    for b in sets[(layers[li + 1], t)]:
                        trans[a, b] += 1
        hs = [float(r["entropy"]) for r in ent if int(r["layer"]) == l and float(r["entropy"]) >= 0]
        tot = sum(load)
        lent = -sum(c / tot * math.log(c / tot) for c in load if c) if tot else 0.0
        top = []
        for e in range(E):
            cand = sorted(((c, tid) for (x, tid), c in pairs.items() if x == e), key=lambda z: (-z[0], z[1]))[:8]
            top.append([[tid, c, c / occ[tid]] for c, tid in cand])
        out["layers"].append({"layer": l, "load": load, "weight_sum": [wsum[(l, e)] for e in range(E)],
                              "entropy_mean": sum(hs) / len(hs) if hs else -1, "entropy_tokens": len(hs),
                              "load_entropy": lent, "coactivation": coact.tolist(),
                              "transition": trans.tolist() if li + 1 < len(layers) else None,
                              "transition_to": layers[li + 1] if li + 1 < len(layers) else None, "top_tokens": top})
    out["experts_per_token"] = used / (T * len(layers))
    return out


if __name__ == "__main__":
    main()
