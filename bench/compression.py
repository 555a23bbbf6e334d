"""Perplexity against memory and active parameters for every pruning and merging method at several
ratios: the tables and charts of docs/COMPRESSION.md.

Two models:
  trained  a qwen3_moe-layout model trained here by `moe train` on tinyshakespeare (bytes): 4 layers,
           d-model 192, 32 experts top-2 of width 256, 500 steps (fixed seed). Calibration: the first
           --calib-tokens bytes of the file (training text); evaluation: the held-out last 10% (the split
           moe train evaluated on).
  random   transformers' own Qwen3MoeForCausalLM class with random weights (std 1/sqrt(fan_in), routers
           twice that, as tests/hf do) and the real Qwen3 vocabulary and tokenizer: 4 layers, hidden 256,
           64 experts top-8 of width 128, bf16. Same texts, tokenized with the Qwen3 tokenizer.
For each model: the original, then `moe prune` (freq, reap, task) and `moe merge` (msmoe, hcsmoe;
compact layout) removing 25%, 50% and 75% of each layer's experts; each output is scored with `moe eval`
on the same held-out tokens (--ctx 256, stride 128) and measured with `moe info` (parameters, active
parameters per token) and the bytes of its tensors. The rows go between the markers of
docs/COMPRESSION.md, the raw numbers to bench/results/compression.json, and one SVG chart per model
(perplexity against routed-expert bytes) to docs/compression_<model>.svg.
Usage: compression.py --moe build/moe [--work DIR] [--threads N] [--only trained|random]"""
import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")
METHODS = [("prune", "freq"), ("prune", "reap"), ("prune", "task"), ("merge", "msmoe"), ("merge", "hcsmoe")]
RATIOS = [0.25, 0.5, 0.75]
COLORS = {"freq": "#3b528b", "reap": "#21918c", "task": "#5ec962", "msmoe": "#e6550d", "hcsmoe": "#9e0142"}


def run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))}: exit {p.returncode}: {p.stderr.strip()[-600:]}")
    return p


def tensor_bytes(d):
    """(all tensor bytes, routed-expert tensor bytes) of a model folder."""
    import struct
    files = [f for f in os.listdir(d) if f.endswith(".safetensors") and f.startswith("model")]
    tot = exp = 0
    for f in files:
        with open(os.path.join(d, f), "rb") as fh:
            h = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
        for k, v in h.items():
            if k == "__metadata__":
                continue
            b = v["data_offsets"][1] - v["data_offsets"][0]
            tot += b
            if ".experts." in k and "shared" not in k:
                exp += b
    return tot, exp


def train_model(a, out):
    if os.path.exists(os.path.join(out, "model.safetensors")):
        return None
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    run([a.moe, "train", "--data", os.path.join(SHARED, "tinyshakespeare.txt"), "--out", out,
         "--d-model", 192, "--layers", 4, "--heads", 4, "--kv-heads", 2, "--head-dim", 48,
         "--experts", 32, "--top-k", 2, "--d-expert", 256, "--router", "softmax_topk", "--layout", "qwen3_moe",
         "--seq-len", 128, "--batch", 8, "--steps", 500, "--lr", "3e-3", "--min-lr", "3e-4",
         "--eval-every", 0, "--save-every", 0, "--seed", 1, "-q", "-t", a.threads])
    return time.time() - t0


def random_model(out):
    """transformers' Qwen3-MoE class with random weights, saved in bf16, with the real Qwen3 tokenizer."""
    if os.path.exists(os.path.join(out, "model.safetensors")):
        return
    import torch
    import transformers
    cfg = transformers.Qwen3MoeConfig(vocab_size=151936, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=64, num_experts=64,
                                      num_experts_per_tok=8, moe_intermediate_size=128, norm_topk_prob=True,
                                      max_position_embeddings=4096, tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                std = 1.0 / math.sqrt(p.shape[-1]) * (2.0 if "mlp.gate.weight" in name else 1.0)
                p.copy_(std * torch.randn(p.shape, generator=g))
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok = os.path.join(SHARED, "tokenizers", "qwen3")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok, f), os.path.join(out, f))


def measure(a, d, held, calib_kind):
    ev = json.loads(run([a.moe, "eval", d, *held, "--ctx", 256, "--json", "-t", a.threads]).stdout)
    info = json.loads(run([a.moe, "info", d, "--json"]).stdout)
    tot, exp = tensor_bytes(d)
    return {"perplexity": ev["perplexity"], "scored": ev["scored"], "params": info["params"],
            "active_params": info["active_params"], "bytes": tot, "expert_bytes": exp,
            "stored_experts": info.get("stored_experts", info["experts"]), "experts": info["experts"]}


def svg_chart(path, title, rows, base):
    """Perplexity (log scale) against routed-expert MiB, one polyline per method."""
    W, H, L, R, T, B = 640, 400, 70, 150, 40, 50
    xs = [r["expert_bytes"] / 2**20 for r in rows]
    ys = [math.log10(r["perplexity"]) for r in rows]
    x0, x1 = 0, max(xs) * 1.05
    y0, y1 = min(ys) - 0.05, max(ys) + 0.05
    X = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)
    Y = lambda v: H - B - (v - y0) / (y1 - y0) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">routed-expert weights (MiB)</text>',
           f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">perplexity (log scale)</text>']
    for i in range(6):
        xv = x0 + (x1 - x0) * i / 5
        out.append(f'<line x1="{X(xv):.1f}" y1="{H - B}" x2="{X(xv):.1f}" y2="{H - B + 5}" stroke="black"/>'
                   f'<text x="{X(xv):.1f}" y="{H - B + 18}" text-anchor="middle">{xv:.1f}</text>')
        yv = y0 + (y1 - y0) * i / 5
        out.append(f'<line x1="{L - 5}" y1="{Y(yv):.1f}" x2="{W - R}" y2="{Y(yv):.1f}" stroke="#eee"/>'
                   f'<text x="{L - 8}" y="{Y(yv) + 4:.1f}" text-anchor="end">{10 ** yv:.3g}</text>')
    orig = [r for r in rows if r["method"] == "original"][0]
    for n, (kind, m) in enumerate(METHODS):
        pts = sorted([r for r in rows if r["method"] == m], key=lambda r: -r["expert_bytes"])
        pts = [orig] + pts
        c = COLORS[m]
        poly = " ".join(f"{X(r['expert_bytes'] / 2**20):.1f},{Y(math.log10(r['perplexity'])):.1f}" for r in pts)
        out.append(f'<polyline points="{poly}" fill="none" stroke="{c}" stroke-width="2"/>')
        for r in pts[1:]:
            out.append(f'<circle cx="{X(r["expert_bytes"] / 2**20):.1f}" cy="{Y(math.log10(r["perplexity"])):.1f}" r="3.5" fill="{c}">'
                       f'<title>{m} {r["ratio"]:.0%}: ppl {r["perplexity"]:.4g}</title></circle>')
        ly = T + 10 + 20 * n
        out.append(f'<line x1="{W - R + 15}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{c}" stroke-width="2"/>'
                   f'<text x="{W - R + 45}" y="{ly + 4}">{kind} {m}</text>')
    out.append(f'<circle cx="{X(orig["expert_bytes"] / 2**20):.1f}" cy="{Y(math.log10(orig["perplexity"])):.1f}" r="5" fill="black"/>')
    out.append(f'<text x="{W - R + 15}" y="{T + 10 + 20 * len(METHODS) + 4}">&#9679; original</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/moe-bench/compression"))
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--calib-tokens", type=int, default=8192)
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--only", default="")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "COMPRESSION.md"))
    ap.add_argument("--json", default=os.path.join(HERE, "results", "compression.json"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    text = open(os.path.join(SHARED, "tinyshakespeare.txt"), "rb").read()
    n_train = int(len(text) * 0.9)
    results = json.load(open(a.json)) if os.path.exists(a.json) else {}
    models = {}
    # trained: byte tokens; calibration from the training text, evaluation on the held-out split
    tdir = os.path.join(a.work, "trained")
    calib_ids = os.path.join(a.work, "calib_bytes.txt")
    held_ids = os.path.join(a.work, "held_bytes.txt")
    open(calib_ids, "w").write(" ".join(map(str, text[:a.calib_tokens])))
    open(held_ids, "w").write(" ".join(map(str, text[n_train:n_train + a.eval_tokens])))
    models["trained"] = (tdir, ["--calib-ids", calib_ids], ["--tokens-file", held_ids])
    # random: the same texts through the Qwen3 tokenizer
    rdir = os.path.join(a.work, "random_qwen3")
    calib_txt = os.path.join(a.work, "calib.txt")
    held_txt = os.path.join(a.work, "held.txt")
    open(calib_txt, "wb").write(text[:4 * a.calib_tokens])
    open(held_txt, "wb").write(text[n_train:n_train + 4 * a.eval_tokens])
    models["random"] = (rdir, ["--calib", calib_txt, "--calib-tokens", a.calib_tokens],
                        ["--text", held_txt, "--max-tokens", a.eval_tokens])
    for name, (d, calib, held) in models.items():
        if a.only and a.only != name:
            continue
        t_train = None
        if name == "trained":
            t_train = train_model(a, d)
        else:
            random_model(d)
        rows = []
        t0 = time.time()
        r = measure(a, d, held, calib)
        r.update(method="original", kind="", ratio=0.0, seconds=time.time() - t0)
        rows.append(r)
        print(f"{name}: original ppl {r['perplexity']:.4f}, {r['expert_bytes'] / 2**20:.1f} MiB of experts", flush=True)
        for kind, m in METHODS:
            for ratio in RATIOS:
                o = os.path.join(a.work, f"{name}.{m}.{int(ratio * 100)}")
                shutil.rmtree(o, ignore_errors=True)
                t0 = time.time()
                flag = "--ratio"
                run([a.moe, kind, d, o, "--method", m, flag, ratio, *calib, "-t", a.threads])
                t_make = time.time() - t0
                r = measure(a, o, held, calib)
                r.update(method=m, kind=kind, ratio=ratio, seconds=t_make)
                rows.append(r)
                print(f"{name}: {kind} {m} {ratio:.0%}: ppl {r['perplexity']:.4f}, {r['stored_experts']} experts, "
                      f"{r['expert_bytes'] / 2**20:.1f} MiB, {t_make:.0f} s", flush=True)
                shutil.rmtree(o, ignore_errors=True)
        results[name] = {"rows": rows, "train_seconds": t_train,
                         "model": json.loads(run([a.moe, "info", d, "--json"]).stdout)}
        svg_chart(os.path.join(ROOT, "docs", f"compression_{name}.svg"),
                  f"{name} model: perplexity vs routed-expert memory", rows, rows[0]["perplexity"])
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    results["machine"] = {"cpu": cpu_name(), "threads": a.threads, "date": time.strftime("%Y-%m-%d"),
                          "python": platform.python_version()}
    json.dump(results, open(a.json, "w"), indent=1)
    write_doc(a, results)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_doc(a, results):
    lines = []
    for name in ("trained", "random"):
        if name not in results:
            continue
        rows, info = results[name]["rows"], results[name]["model"]
        base = rows[0]
        lines += [f"**{name}** (`{info['model_type']}`, {info['layers']} layers, {info['experts']} experts top-{info['top_k']}, "
                  f"{info['dtype']}; {base['scored']} held-out tokens scored):", "",
                  "| method | experts removed | experts/layer | perplexity | change | routed-expert MiB | total params | active params/token |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            label = "original" if r["method"] == "original" else f"{r['kind']} {r['method']}"
            lines.append(f"| {label} | {r['ratio']:.0%} | {r['stored_experts']} | {r['perplexity']:.4f} | "
                         f"{100 * (r['perplexity'] / base['perplexity'] - 1):+.1f}% | {r['expert_bytes'] / 2**20:.2f} | "
                         f"{r['params'] / 1e6:.2f} M | {r['active_params'] / 1e6:.2f} M |")
        lines += ["", f"![perplexity against routed-expert memory, {name} model](compression_{name}.svg)", ""]
    m = results.get("machine", {})
    lines.append(f"Measured on {m.get('cpu', '?')}, `-t {m.get('threads', '?')}`, {m.get('date', '?')}; "
                 f"regenerate with `python3 bench/compression.py --moe build/moe`.")
    body = "\n".join(lines) + "\n"
    doc = open(a.doc).read()
    b, e = doc.index("<!-- table:begin -->"), doc.index("<!-- table:end -->")
    open(a.doc, "w").write(doc[:b] + "<!-- table:begin -->\n" + body + doc[e:])
    print(body)


if __name__ == "__main__":
    main()
