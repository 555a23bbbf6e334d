"""hf5_compare.py - the checks of tests/hf/test_hf_logits.py for model types that only transformers 5.x
knows: tiny random models built with transformers' own classes (saved with save_pretrained, or rewritten
into a released checkpoint's tensor layout by a case's `rewrite`), compared with `moe`:
  1. every position's logits from `moe logits` (prefill) match transformers' (relative error <= 1e-4;
     the reference runs in float32 on exactly the stored weights, so bf16 cases are held to it too),
     and with --no-mmap for bf16 cases (packed decode layout);
  2. `moe logits --stepwise` (one token at a time through the KV cache and recurrent states) matches
     the prefill (<= 1e-5, or within 4 times the distance of transformers' own decode from its prefill:
     linear attention decodes with the recurrent form of the delta rule and prefills with the chunked one);
  3. the experts chosen per MoE layer and token match transformers' router (a mismatch is accepted only
     at a near-tie of the router scores), and so do the combine weights and router scores (1e-5, or, where
     transformers' own float32 routing is farther than that from a float64 run of the same model, within
     4 times transformers' distance from the float64 values);
  4. `moe info --json` parameter counts match the model's parameters (active: routed experts beyond
     top-k excluded);
  5. `moe generate` continues greedily like transformers' argmax.
batch_check runs tests/unit/test_batch.c on saved folders: several sessions in one batched step against
each alone (logits within 1e-4, the bar against transformers: random hybrid models amplify rounding to
1e-5..5e-5 there), including a session reset and restarted beside continuing ones.
A case is a dict: name, model_type, config (overrides), dtype, seq, and optionally randomize(model, gen),
routes(model, cfg) -> RouteCapture-like object with .routes, rewrite(out_dir)."""
import copy
import json
import math
import os
import subprocess

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

from test_hf_logits import check_routes, rel_err, run

TOL = 1e-4
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


@torch.no_grad()
def randomize(model, gen, centred_norms=False):
    """Redraw every parameter with a spread that makes routing decisive (HF's std 0.02 would make it
    nearly uniform). Norm gains: 1 + 0.2 N(0,1), or 0.2 N(0,1) where the model applies 1 + w."""
    for name, p in model.named_parameters():
        if "norm" in name:
            centred = centred_norms and "linear_attn.norm" not in name
            p.copy_((0.0 if centred else 1.0) + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        else:
            fan_in = p.shape[-1] if p.dim() > 1 else 1
            if "experts.gate_up_proj" in name or "experts.down_proj" in name:
                fan_in = p.shape[1] if model.config.model_type == "llama4_text" else p.shape[-1]
            std = 1.0 / math.sqrt(fan_in)
            if name.endswith("gate.weight") or "router" in name:
                std *= 2.0
            p.copy_(std * torch.randn(p.shape, generator=gen))


def param_counts(model):
    """(total, active): routed experts beyond top-k of each MoE layer are inactive."""
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    k = model.config.num_experts_per_tok
    for name, mod in model.named_modules():
        if name.endswith(".experts") and hasattr(mod, "gate_up_proj"):
            E = mod.gate_up_proj.shape[0]
            per = (mod.gate_up_proj.numel() + mod.down_proj.numel()) // E
            inactive += per * (E - k)
    return total, total - inactive


def build(case, workdir, seed=1234):
    cfg = transformers.CONFIG_MAPPING[case["model_type"]](**case["config"])
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    (case.get("randomize") or randomize)(model, gen)
    out_dir = os.path.join(workdir, case["name"])
    if case["dtype"] != "f32":
        model = model.to(DTYPES[case["dtype"]])
    model.save_pretrained(out_dir)
    if case["dtype"] != "f32":
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    if case.get("rewrite"):
        case["rewrite"](out_dir)
    rng = np.random.default_rng(seed + case["seq"])
    tokens = rng.integers(0, cfg.vocab_size, size=case["seq"]).tolist()
    cap = case["routes"](model, model.config)
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float().numpy()
    total, active = param_counts(model)
    return out_dir, tokens, logits, cap.routes, {"params": total, "active_params": active}, model


@torch.no_grad()
def routes_f64(case, model, tokens):
    """The reference's routing computed in float64 on the same weights: the exact values that both
    transformers' float32 and moe approximate."""
    m64 = copy.deepcopy(model).double()
    for mod in m64.modules():   # the copy carries the float32 capture's hooks
        mod._forward_hooks.clear()
    m64.config._experts_implementation = "eager"   # grouped_mm has no float64 kernel
    cap = case["routes"](m64, m64.config)
    m64(torch.tensor([tokens]))
    return cap.routes


def route_deviation(routes, exact):
    """Largest difference of weights (experts in common) and scores from the exact routes."""
    worst = 0.0
    for key, (idx, w, sc) in routes.items():
        if key not in exact:
            continue
        eidx, ew, esc = exact[key]
        ew = dict(zip(eidx, ew))
        worst = max([worst] + [abs(x - ew[e]) for e, x in zip(idx, w) if e in ew] +
                    [abs(a - b) for a, b in zip(sc, esc)])
    return worst


@torch.no_grad()
def hf_stepwise(model_dir, tokens):
    """transformers decoding one token at a time through its cache: logits [n][V]."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    rows, cache = [], None
    for t in tokens:
        out = model(torch.tensor([[t]]), cache=cache, use_cache=True)
        cache = out.cache
        rows.append(out.logits[0, -1].float().numpy())
    return np.array(rows, dtype=np.float64)


def check_case(moe, case, workdir, failures):
    name = case["name"]
    d, tokens, ref, routes, info, model = build(case, workdir)
    toks = ",".join(map(str, tokens))
    out, rout, step = (os.path.join(workdir, f"{name}.{s}.json") for s in ("logits", "routes", "step"))
    run([moe, "logits", d, "--tokens", toks, "--out", out, "--routes", rout])
    ours = np.array(json.load(open(out))["logits"], dtype=np.float64)
    if ours.shape != ref.shape:
        failures.append(f"{name}: logits shape {ours.shape} != HF {ref.shape}")
        return
    err = rel_err(ours, ref)
    if not err <= TOL:
        failures.append(f"{name}: logits relative error {err:.2e} > {TOL}")
    if case["dtype"] == "bf16":
        nm = os.path.join(workdir, f"{name}.nommap.json")
        run([moe, "logits", d, "--tokens", toks, "--out", nm, "--no-mmap"])
        mine = np.array(json.load(open(nm))["logits"], dtype=np.float64)
        e1, e2 = rel_err(mine, ours), rel_err(mine, ref)
        if not (e1 <= 1e-5 and e2 <= TOL):
            failures.append(f"{name}: --no-mmap logits: {e1:.2e} from the mapped run, {e2:.2e} from HF")
    run([moe, "logits", d, "--tokens", toks, "--out", step, "--stepwise"])
    stepwise = np.array(json.load(open(step))["logits"], dtype=np.float64)
    serr = rel_err(stepwise, ours)
    if not serr <= 1e-5:
        # Linear attention computes a prefill in chunks (a triangular solve per 64 tokens) and a decode
        # token by token: the two round differently, and a random model can amplify that. Then the bar
        # is transformers' own decode, which differs from its own prefill the same way: within 4 times
        # that (other summation orders, as for the routes below).
        own = rel_err(hf_stepwise(d, tokens), ref)
        if not serr <= max(1e-5, 4 * own):
            failures.append(f"{name}: stepwise decode differs from prefill by {serr:.2e} (transformers' own decode "
                            f"from its prefill: {own:.2e})")
        else:
            print(f"{name}: stepwise {serr:.1e} from prefill; transformers' own decode is {own:.1e} from its prefill")
    route_fail = []
    n_routes, ties = check_routes(rout, routes, route_fail, name) if routes else (0, 0)
    if route_fail and all(" weight " in f or "router scores" in f for f in route_fail):
        # The same experts, weights or scores off by more than 1e-5: a random model may amplify float32
        # rounding that much (linear attention's gated RMSNorm rescales rows whose output nearly cancels,
        # by up to 40x in q3n_chunks). Then the bar is transformers' own float32 distance from the exact
        # (float64) values: moe, summing in other orders (SIMD), must be within 4 times that.
        exact = routes_f64(case, model, tokens)
        own = route_deviation(routes, exact)
        mine = {(r["layer"], r["pos"]): (r["experts"], r["weights"], r["scores"]) for r in json.load(open(rout))["routes"]}
        dev = route_deviation(mine, exact)
        if dev <= max(1e-5, 4 * own):
            print(f"{name}: router weights/scores {dev:.1e} from float64, transformers' float32 {own:.1e}")
            route_fail = []
        else:
            route_fail.append(f"{name}: routes {dev:.2e} from float64, transformers' float32 only {own:.2e}")
    failures += route_fail
    got = json.loads(run([moe, "info", d, "--json"]))
    for key in ("params", "active_params"):
        if got[key] != info[key]:
            failures.append(f"{name}: info {key} {got[key]} != HF {info[key]}")
    greedy = run([moe, "generate", d, "--tokens", toks, "-n", "1"]).strip()
    if int(greedy) != int(np.argmax(ref[-1])):
        failures.append(f"{name}: generate gave {greedy}, HF argmax is {int(np.argmax(ref[-1]))}")
    print(f"{name:28s} logits rel err {err:.1e}  stepwise {serr:.1e}  routes {n_routes} (near-ties {ties})  "
          f"params {got['params']}", flush=True)


def batch_check(moe, dirs, failures):
    """Batched sessions against each alone on these folders (the test_batch binary; a missing binary fails)."""
    tools = os.environ.get("MOE_TEST_TOOLS") or os.path.join(os.path.dirname(os.path.abspath(moe)), "tests")
    exe = os.path.join(tools, "test_batch")
    if not os.access(exe, os.X_OK):
        failures.append(f"batch check: no test_batch binary at {exe}")
        return
    p = subprocess.run([exe] + list(dirs), capture_output=True, text=True, timeout=1200)
    for line in p.stdout.splitlines():
        if "batched vs alone" in line or line.startswith(("FAIL", "note", "fresh seed")) or "checks," in line:
            print("batch: " + line, flush=True)
    if p.returncode != 0:
        tail = (p.stdout + p.stderr).strip().splitlines()[-3:]
        failures.append(f"batch check on {', '.join(os.path.basename(d) for d in dirs)}: exit {p.returncode}: {' | '.join(tail)}")


def bad_input(moe, model_dir, workdir, name, edit_config=None, edit_tensors=None, expect="", code=2):
    """Copy model_dir, break it one way, and require exit code `code` with one line on stderr naming the
    problem (`expect` must occur in it)."""
    import shutil
    from safetensors.torch import load_file, save_file
    bad = os.path.join(workdir, "bad_" + name)
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(model_dir, bad)
    if edit_config:
        cfg = json.load(open(os.path.join(bad, "config.json")))
        edit_config(cfg)
        json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
    if edit_tensors:
        path = os.path.join(bad, "model.safetensors")
        sd = load_file(path)
        edit_tensors(sd)
        save_file(sd, path, metadata={"format": "pt"})
    p = subprocess.run([moe, "logits", bad, "--tokens", "1,2,3"], capture_output=True, text=True, timeout=120)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    if p.returncode != code or len(lines) != 1 or expect not in lines[0]:
        return f"bad input {name}: exit {p.returncode}, stderr {p.stderr.strip()!r} (wanted exit {code} and \"{expect}\")"
    return None
