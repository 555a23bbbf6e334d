"""test_zoo_shared.py - every router of the zoo on a Qwen2-MoE checkpoint, whose shared expert is scaled
by its sigmoid gate, against an independent reference: transformers' own model with each MoE block's
routing replaced by a torch version of the router written from docs/ROUTERS.md (not from moe's C), and
transformers' own experts, shared expert and shared-expert gate.

moe reads the router from the checkpoint's "moe_router" / "moe_router_params" keys (src/model/config_moe.c)
and must run every router through the same MoE layer: routed experts, then the shared expert times
sigmoid(x . w_gate). (Before the layer was one path for all routers, the zoo routers' path added the
shared expert without its gate: issue 9 item 5.) Prefill logits must match within 1e-4 relative.
Usage: test_zoo_shared.py --moe BIN --work DIR"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

import hf_cases

TOL = 1e-4
M64 = (1 << 64) - 1
E, K, SEQ = 6, 2, 23

# (label, moe_router, moe_router_params)
ROUTERS = [
    ("softmax_topk", "softmax_topk", {}),
    ("switch", "switch", {"capacity_factor": 1.0}),
    ("expert_choice", "expert_choice", {"capacity_factor": 1.0, "routed_scaling": 1.5}),
    ("base", "base", {}),
    ("soft", "soft", {"slots": 1}),
    ("hash", "hash", {"seed": 5}),
    ("thor", "thor", {"seed": 9}),
    ("top_p", "top_p", {"top_p": 0.6}),
    ("sparsemax", "sparsemax", {}),
]


def rel_err(a, b):
    """Largest |a - b| of a row relative to the row's largest |b|, over all rows."""
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


def hash64(x):
    """splitmix64's finaliser (docs/ROUTERS.md: hash routing and THOR's inference draw)."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def distinct(hashes):
    """k distinct experts from k hashes: h mod E, moved to the next free expert on a collision."""
    out = []
    for h in hashes:
        e = h % E
        while e in out:
            e = (e + 1) % E
        out.append(e)
    return out


def route(name, p, logits, tokens, layer):
    """Dense combine weights W [T][E] of a sparse router, or ("soft", D, C)."""
    T = logits.shape[0]
    W = torch.zeros(T, E, dtype=torch.float64)
    scale = p.get("routed_scaling", 1.0)
    probs = F.softmax(logits, dim=-1)
    if name == "softmax_topk":           # Qwen2-MoE's own routing (norm_topk_prob false)
        w, idx = torch.topk(probs, K, dim=-1)
        for t in range(T):
            for j in range(K):
                W[t, idx[t, j]] = float(w[t, j]) * scale
    elif name == "switch":               # top-k with capacity, first choices of all tokens first
        cap = math.ceil(p["capacity_factor"] * T * K / E)
        idx = torch.topk(probs, K, dim=-1).indices
        fill = [0] * E
        for j in range(K):
            for t in range(T):
                e = int(idx[t, j])
                if fill[e] < cap:
                    fill[e] += 1
                    W[t, e] = float(probs[t, e]) * scale
    elif name == "expert_choice":        # each expert takes its top-C tokens
        C = min(math.ceil(p["capacity_factor"] * T * K / E), T)
        for e in range(E):
            for t in torch.topk(probs[:, e], C).indices.tolist():
                W[t, e] = float(probs[t, e]) * scale
    elif name == "base":                 # inference: the best expert, weight sigmoid(logit)
        for t in range(T):
            e = int(torch.argmax(logits[t]))
            W[t, e] = float(torch.sigmoid(logits[t, e]))
    elif name == "hash":
        for t in range(T):
            for e in distinct([hash64(p["seed"] ^ (tokens[t] << 8) ^ j) for j in range(K)]):
                W[t, e] = 1.0 / K
    elif name == "thor":                 # inference: a fixed draw from (seed, layer, position)
        for t in range(T):
            for e in distinct([hash64(p["seed"] ^ (layer << 48) ^ (t << 8) ^ j) for j in range(K)]):
                W[t, e] = 1.0 / K
    elif name == "top_p":                # experts by decreasing p until their sum reaches top_p
        for t in range(T):
            order = torch.argsort(probs[t], descending=True, stable=True).tolist()
            cum, n = 0.0, 0
            while n < E and (n == 0 or cum < p["top_p"]):
                cum += float(probs[t, order[n]])
                n += 1
            for e in order[:n]:
                W[t, e] = float(probs[t, e]) * scale
    elif name == "sparsemax":            # Euclidean projection of the logits onto the simplex
        for t in range(T):
            z = logits[t].double()
            zs = torch.sort(z, descending=True).values
            cum = torch.cumsum(zs, 0)
            ks = torch.arange(1, E + 1, dtype=torch.float64)
            k = int(torch.nonzero(1 + ks * zs > cum).max()) + 1
            tau = (cum[k - 1] - 1) / k
            W[t] = torch.clamp(z - tau, min=0) * scale
    elif name == "soft":                 # one group (the whole prefill); slots = 1
        return "soft", F.softmax(logits, dim=0), F.softmax(logits, dim=-1)
    else:
        raise ValueError(name)
    return W


def moe_block(mod, name, params, tokens, layer):
    def forward(hidden_states):
        b, s, d = hidden_states.shape
        x = hidden_states.view(-1, d)
        logits = mod.gate(x).float()
        r = route(name, params, logits, tokens, layer)
        out = torch.zeros_like(x)
        if isinstance(r, tuple):
            _, D, C = r
            slots = D.t() @ x                                          # [E][d]
            ys = torch.stack([mod.experts[e](slots[e:e + 1])[0] for e in range(E)])
            out = C @ ys
        else:
            for e in range(E):
                rows = torch.nonzero(r[:, e]).flatten()
                if len(rows):
                    out[rows] += mod.experts[e](x[rows]) * r[rows, e, None].float()
        out = out + torch.sigmoid(mod.shared_expert_gate(x)) * mod.shared_expert(x)
        return out.view(b, s, d), logits
    return forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    case = ("zoo_qwen2_moe_shared", "qwen2_moe",
            hf_cases.C(num_experts=E, num_experts_per_tok=K, moe_intermediate_size=20, shared_expert_intermediate_size=28,
                       norm_topk_prob=False), "f32", SEQ)
    base, tokens, hf_ref, _, _ = hf_cases.build_case(case, a.work)
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager").eval()
    failures = []
    for label, router, params in ROUTERS:
        d = os.path.join(a.work, label)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(base, "model.safetensors"), os.path.join(d, "model.safetensors"))
        cfg = json.load(open(os.path.join(base, "config.json")))
        cfg["moe_router"] = router
        cfg["moe_router_params"] = params
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=1)
        saved = {}
        for i, layer in enumerate(model.model.layers):
            saved[i] = layer.mlp.forward
            layer.mlp.forward = moe_block(layer.mlp, router, params, tokens, i)
        with torch.no_grad():
            ref = model(torch.tensor([tokens])).logits[0].double().numpy()
        for i, layer in enumerate(model.model.layers):
            layer.mlp.forward = saved[i]
        if router == "softmax_topk":   # the reference routing itself is checked against transformers'
            e0 = rel_err(ref, hf_ref)
            if not e0 <= 1e-5:
                failures.append(f"the torch softmax_topk reference differs from transformers by {e0:.2e}")
        out = os.path.join(a.work, f"{label}.json")
        p = subprocess.run([a.moe, "logits", d, "--tokens", ",".join(map(str, tokens)), "--out", out],
                           capture_output=True, text=True)
        if p.returncode != 0:
            failures.append(f"{label}: moe logits exited {p.returncode}: {p.stderr.strip()}")
            continue
        ours = np.array(json.load(open(out))["logits"], dtype=np.float64)
        err = rel_err(ours, ref)
        print(f"{label:16s} logits rel err {err:.1e}", flush=True)
        if not err <= TOL:
            failures.append(f"{label}: logits relative error {err:.2e} > {TOL}")
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("every router runs with the gated shared expert as the reference does")


if __name__ == "__main__":
    main()
