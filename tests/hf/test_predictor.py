"""The fitted cross-layer expert predictor (`moe fit-predictor`, `--predictor`) against a reference.

For tiny random Hugging Face models (softmax top-k and DeepSeek-V3 routing, f32 and bf16, dense layers
between MoE layers), `moe fit-predictor` runs on random token ids; the test recomputes the same ridge
regression in float64 numpy from transformers' own hidden states (hooks on the FFN norm and on each
decoder layer) and requires the written weights to match. For top-k-of-logits routers it also
recomputes the held-out report (share of each token's experts found by the router-as-predictor and by
the fitted predictor), and with the default automatic ridge that every map is the solution for the
strength it reports (or the router's gate). Then the predictor is used by the disk store: outputs must stay byte-identical
to the resident run, and --stats must count predictions. Last, hostile predictor files and bad flags
must give a one-line error naming the problem."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

import hf_cases
from hf_cases import C, DS_MLA

CASES = [
    ("pred_qwen3", "qwen3_moe", C(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16, num_hidden_layers=4), "f32", 8),
    ("pred_mixtral_bf16", "mixtral", C(num_local_experts=8, num_experts_per_tok=2, num_hidden_layers=3), "bf16", 8),
    ("pred_qwen2_sparse", "qwen2_moe", C(num_experts=8, num_experts_per_tok=3, moe_intermediate_size=12,
                                         shared_expert_intermediate_size=24, decoder_sparse_step=2,
                                         num_hidden_layers=5), "f32", 8),
    ("pred_dsv3", "deepseek_v3", C(n_routed_experts=16, num_experts_per_tok=4, moe_intermediate_size=12, n_shared_experts=1,
                                   first_k_dense_replace=1, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                                   norm_topk_prob=True, num_key_value_heads=4, num_hidden_layers=4, **DS_MLA), "f32", 8),
]
N_TOKENS, CTX, HOLDOUT, RIDGE = 1200, 64, 0.25, 1e-3


def run(cmd, code=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != code:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}, expected {code}: {p.stderr.strip()}")
    return p.stdout, p.stderr


def moe_layers(model):
    """[(layer index, FFN norm weight, gate weight [E][d])] of the MoE layers."""
    out = []
    for i, lay in enumerate(model.model.layers):
        mlp = getattr(lay, "block_sparse_moe", None) or lay.mlp
        gate = getattr(mlp, "gate", None)
        if gate is None or not hasattr(mlp, "experts"):
            continue
        out.append((i, lay.post_attention_layernorm.weight.detach().float(), gate.weight.detach().float()))
    return out


@torch.no_grad()
def capture(model, tokens):
    """Per window of CTX tokens: {layer: FFN input} and {layer: layer output}, concatenated."""
    xs, hs = {}, {}
    hooks = []
    for i, lay in enumerate(model.model.layers):
        hooks.append(lay.post_attention_layernorm.register_forward_hook(
            lambda m, a, o, i=i: xs.setdefault(i, []).append(o[0].float())))
        hooks.append(lay.register_forward_hook(
            lambda m, a, o, i=i: hs.setdefault(i, []).append((o[0] if isinstance(o, tuple) else o)[0].float())))
    for w in range(0, len(tokens), CTX):
        model(torch.tensor([tokens[w:w + CTX]]))
    for h in hooks:
        h.remove()
    return {i: torch.cat(v) for i, v in xs.items()}, {i: torch.cat(v) for i, v in hs.items()}


def features(x_prev, h_prev, g_prev, g_next, eps):
    safe = torch.where(g_prev != 0, g_prev, torch.ones_like(g_prev))
    early = torch.where(g_prev != 0, x_prev * (g_next / safe), torch.zeros_like(x_prev))
    late = h_prev * torch.rsqrt(h_prev.pow(2).mean(-1, keepdim=True) + eps) * g_next
    return early, late


def ridge(F, Z, G, strength=RIDGE):
    F1 = np.concatenate([F, np.ones((len(F), 1))], 1)
    A = F1.T @ F1
    lam = strength * np.trace(A) / A.shape[0]
    W0 = np.concatenate([G.T, np.zeros((1, G.shape[0]))], 0)
    return np.linalg.solve(A + lam * np.eye(A.shape[0]), F1.T @ Z + lam * W0)  # [d+1][E]


def found(actual, guesses):
    return sum(len(set(a) & set().union(*[set(g[t]) for g in guesses])) for t, a in enumerate(actual))


def check_case(case, moe, work, failures):
    name, model_type = case[0], case[1]
    d, _, _, _, _ = hf_cases.build_case(case, work)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config
    k, eps = cfg.num_experts_per_tok, float(np.float32(cfg.rms_norm_eps))
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, cfg.vocab_size, size=N_TOKENS).tolist()
    ids = os.path.join(work, f"{name}.ids")
    open(ids, "w").write(" ".join(map(str, tokens)))
    pred = os.path.join(work, f"{name}.predictor.safetensors")
    out, _ = run([moe, "fit-predictor", d, "--tokens-file", ids, "--ctx", str(CTX), "--holdout", str(HOLDOUT),
                  "--ridge", str(RIDGE), "-o", pred, "--json"])
    rep = json.loads(out)
    n_val = int(N_TOKENS * HOLDOUT)
    n_fit = N_TOKENS - n_val
    if rep["fit_tokens"] != n_fit or rep["val_tokens"] != n_val:
        failures.append(f"{name}: report says {rep['fit_tokens']} + {rep['val_tokens']} tokens, expected {n_fit} + {n_val}")
    got = load_file(pred)
    layers = moe_layers(model)
    X, H = capture(model, tokens[:n_fit])
    Xv, Hv = capture(model, tokens[n_fit:])
    expect_names = set()
    hits = {"router": np.zeros(3), "fitted": np.zeros(3)}
    total = 0
    for (p, gp, _), (n, gn, G) in zip(layers, layers[1:]):
        Z = (X[n].double() @ G.double().T).numpy()
        for gi, guess in enumerate(("early", "late")):
            F = features(X[p], H[p], gp, gn, eps)[gi].double().numpy()
            W = ridge(F, Z, G.double().numpy())
            for kind, ref in (("weight", W[:-1].T), ("bias", W[-1])):
                key = f"layers.{n}.{guess}.{kind}"
                expect_names.add(key)
                if key not in got:
                    failures.append(f"{name}: {key} missing")
                    continue
                err = np.abs(got[key].astype(np.float64) - ref).max() / max(np.abs(W).max(), 1e-6)
                if got[key].shape != ref.shape or err > 2e-3:
                    failures.append(f"{name}: {key} differs from the numpy ridge solution (max rel err {err:.2e})")
        if model_type == "deepseek_v3":
            continue  # its selection (bias, groups) is checked through the weights only
        act = torch.topk(Xv[n] @ G.T, k, -1).indices.tolist()
        Fv = features(Xv[p], Hv[p], gp, gn, eps)
        for src in ("router", "fitted"):
            gs = []
            for gi, guess in enumerate(("early", "late")):
                if src == "router":
                    lg = Fv[gi] @ G.T
                else:
                    lg = Fv[gi] @ torch.from_numpy(got[f"layers.{n}.{guess}.weight"]).T + torch.from_numpy(got[f"layers.{n}.{guess}.bias"])
                gs.append(torch.topk(lg, k, -1).indices.tolist())
            hits[src] += [found(act, [gs[0]]), found(act, [gs[1]]), found(act, gs)]
        total += len(act) * k
    if set(got) != expect_names:
        failures.append(f"{name}: tensors {sorted(set(got) ^ expect_names)} unexpected or missing")
    if total:
        for src in ("router", "fitted"):
            ref = hits[src] / total
            if np.abs(np.array(rep[src]) - ref).max() > 0.03:
                failures.append(f"{name}: held-out report {src} {rep[src]} vs reference {ref.round(4).tolist()}")
    # the predictor drives the disk store: outputs identical, predictions counted
    toks = ",".join(map(str, tokens[:40]))
    ref_json = os.path.join(work, f"{name}.ref.json")
    run([moe, "logits", d, "--tokens", toks, "--stepwise", "-o", ref_json])
    total_bytes = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))
    disk_json = os.path.join(work, f"{name}.disk.json")
    _, err = run([moe, "logits", d, "--tokens", toks, "--stepwise", "-o", disk_json, "--mem-budget", str(total_bytes // 4),
                  "--prefetch", "--predictor", pred, "--stats"])
    if open(disk_json, "rb").read() != open(ref_json, "rb").read():
        failures.append(f"{name}: logits with --predictor differ from the resident run")
    js = json.loads(next(l for l in err.splitlines() if l.startswith("stats-json "))[11:])
    if js["predicted"] == 0 or js["needed_predicted"] == 0:
        failures.append(f"{name}: --predictor made no predictions ({js})")
    print(f"{name:20s} {len(layers) - 1} predicted layers, held-out found router {rep['router'][2]:.3f} "
          f"fitted {rep['fitted'][2]:.3f}, prefetch accuracy in the store {js['prefetch_accuracy']:.3f}", flush=True)
    return d, pred


AUTO_RIDGES = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]


def check_auto(case, moe, work, failures):
    """Default (automatic) ridge: each guess's map is the ridge solution for the strength the report
    names, or the router's own gate (reported as 0)."""
    name = case[0]
    d = os.path.join(work, name)
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    eps = float(np.float32(model.config.rms_norm_eps))
    tokens = [int(x) for x in open(os.path.join(work, f"{name}.ids")).read().split()]
    pred = os.path.join(work, f"{name}.auto.safetensors")
    out, _ = run([moe, "fit-predictor", d, "--tokens-file", os.path.join(work, f"{name}.ids"), "--ctx", str(CTX),
                  "--holdout", str(HOLDOUT), "-o", pred, "--json"])
    rep = json.loads(out)
    n_val = int(N_TOKENS * HOLDOUT)
    if rep["val_tokens"] != n_val - n_val // 2:
        failures.append(f"{name} auto: report on {rep['val_tokens']} tokens, expected the second half ({n_val - n_val // 2})")
    got = load_file(pred)
    layers = moe_layers(model)
    X, H = capture(model, tokens[:N_TOKENS - n_val])
    by_layer = {r["layer"]: r for r in rep["layers"]}
    chosen = []
    for (p, gp, _), (n, gn, G) in zip(layers, layers[1:]):
        Z = (X[n].double() @ G.double().T).numpy()
        for gi, guess in enumerate(("early", "late")):
            r = by_layer[n]["ridge"][gi]
            chosen.append(r)
            if r == 0:
                ref_w, ref_b = G.numpy(), np.zeros(G.shape[0])
            elif r not in AUTO_RIDGES:
                failures.append(f"{name} auto: layer {n} {guess}: ridge {r} is not a candidate")
                continue
            else:
                W = ridge(features(X[p], H[p], gp, gn, eps)[gi].double().numpy(), Z, G.double().numpy(), r)
                ref_w, ref_b = W[:-1].T, W[-1]
            scale = max(np.abs(ref_w).max(), 1e-6)
            for key, ref in ((f"layers.{n}.{guess}.weight", ref_w), (f"layers.{n}.{guess}.bias", ref_b)):
                err = np.abs(got[key].astype(np.float64) - ref).max() / scale
                if err > 2e-2 if r and r < 1e-4 else err > 2e-3:
                    failures.append(f"{name} auto: {key} (ridge {r}) differs from the reference (max rel err {err:.2e})")
    print(f"{name:20s} automatic ridge per guess {chosen}, held-out found router {rep['router'][2]:.3f} fitted "
          f"{rep['fitted'][2]:.3f}", flush=True)


def check_bad(moe, work, d, pred, other, failures):
    """Hostile predictor files and bad flags: one line naming the problem, the right exit code."""
    good = load_file(pred)
    def variant(tag, tensors):
        p = os.path.join(work, f"bad_{tag}.safetensors")
        save_file(tensors, p)
        return p
    first = sorted(good)[0]
    extra = dict(good, **{"layers.0.early.scale": np.ones(3, np.float32)})
    missing = {k: v for k, v in good.items() if k != first}
    f16 = dict(good, **{first: good[first].astype(np.float16)})
    shape = dict(good, **{first: np.concatenate([good[first], good[first]], 0)})
    wrong_layer = dict(good, **{first.replace(first.split(".")[1], "0", 1): good[first]})
    trunc = os.path.join(work, "bad_trunc.safetensors")
    open(trunc, "wb").write(open(pred, "rb").read()[:-7])
    garbage = os.path.join(work, "bad_garbage.safetensors")
    open(garbage, "wb").write(b"\xff" * 64)
    flags = ["--mem-budget", "1M", "--prefetch", "--predictor"]
    cases = [
        (flags + [variant("extra", extra)], 2, "unexpected tensor"),
        (flags + [variant("missing", missing)], 2, "missing tensor"),
        (flags + [variant("f16", f16)], 2, "expected F32"),
        (flags + [variant("shape", shape)], 2, "should have shape"),
        (flags + [variant("layer", wrong_layer)], 2, "not a MoE layer that follows"),
        (flags + [trunc], 2, "bad_trunc"),
        (flags + [garbage], 2, "bad_garbage"),
        (flags + [os.path.join(work, "nonexistent.safetensors")], 2, "nonexistent"),
        (flags + [other], 2, "different model"),
        (["--mem-budget", "1M", "--predictor", pred], 1, "--predictor needs --prefetch"),
        (["--mem-budget", "1M", "--prefetch", "--no-predict", "--predictor", pred], 1, "--predictor needs --prefetch"),
        (["--predictor", pred], 1, "--predictor needs --prefetch"),
    ]
    for argv, code, msg in cases:
        p = subprocess.run([moe, "logits", d, "--tokens", "1,2"] + argv, capture_output=True, text=True)
        lines = p.stderr.strip().splitlines()
        if p.returncode != code or msg not in p.stderr or len(lines) != 1:
            failures.append(f"moe logits {' '.join(argv)}: exit {p.returncode} ({p.stderr.strip()}), expected {code} and '{msg}'")
    ids = os.path.join(work, "pred_qwen3.ids")
    dense, _, _, _, _ = hf_cases.build_case(next(c for c in hf_cases.CASES if c[0] == "llama_gqa"), work)
    one_moe, _, _, _, _ = hf_cases.build_case(("pred_one_moe", "mixtral", C(num_local_experts=4, num_experts_per_tok=2,
                                                                             num_hidden_layers=1), "f32", 4), work)
    big = os.path.join(work, "big.ids")
    open(big, "w").write(" ".join(["5 6 7"] * 100 + ["1000000"]))
    fit = [
        ([dense, "--tokens-file", ids], 1, "at least two MoE layers"),
        ([one_moe, "--tokens-file", ids], 1, "at least two MoE layers"),
        ([d, "--tokens-file", ids, "--text", ids], 1, "exactly one of"),
        ([d, "--text", os.path.join(work, "nonexistent.txt")], 2, "nonexistent.txt"),
        ([d, "--tokens-file", big], 2, "outside the vocabulary"),
        ([d, "--tokens-file", ids, "-o", os.path.join(work, "no_such_dir", "p.safetensors")], 2, "no_such_dir"),
        ([d, "--tokens-file", ids, "--ridge", "-1"], 1, "--ridge"),
        ([d, "--tokens-file", ids, "--holdout", "0"], 1, "held-out tokens"),
        ([d, "--tokens-file", ids, "--holdout", "1.5"], 1, "--holdout"),
        ([d, "--tokens-file", ids, "--prefetch"], 1, "do not apply"),
    ]
    # repetitive calibration tokens: the automatic choice drops strengths whose system is singular
    rep_ids = os.path.join(work, "repetitive.ids")
    open(rep_ids, "w").write(" ".join(["5 6 7"] * 300))
    p = subprocess.run([moe, "fit-predictor", d, "--tokens-file", rep_ids, "-o", os.path.join(work, "rep.safetensors")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        failures.append(f"fit-predictor on repetitive tokens: exit {p.returncode} ({p.stderr.strip()})")
    for argv, code, msg in fit:
        p = subprocess.run([moe, "fit-predictor"] + argv, capture_output=True, text=True)
        lines = [l for l in p.stderr.strip().splitlines() if not l.startswith("fit-predictor pass")]
        if p.returncode != code or msg not in p.stderr or len(lines) != 1:
            failures.append(f"moe fit-predictor {' '.join(argv)}: exit {p.returncode} ({p.stderr.strip()}), "
                            f"expected {code} and '{msg}'")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(2)
    failures, made = [], []
    for case in CASES:
        try:
            made.append(check_case(case, a.moe, a.work, failures))
        except Exception as e:
            failures.append(f"{case[0]}: {e}")
            print(f"{case[0]}: ERROR {e}", flush=True)
    try:
        check_auto(CASES[0], a.moe, a.work, failures)
    except Exception as e:
        failures.append(f"automatic ridge: {e}")
    if len(made) >= 2:
        check_bad(a.moe, a.work, made[0][0], made[0][1], made[1][1], failures)
    for f in failures:
        print("FAIL", f)
    print("PASS" if not failures else f"{len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
