"""Dynamic routing and steering (issue 11 items 4-6, docs/DYNAMIC.md) against transformers 4.57 and
against the rules recomputed from moe's reported router scores (tests/hf/dynamic_checks.py):
top-p 1 with k = E equals transformers' dense mixing (num_experts_per_tok = E); options that must
change nothing give bit-identical logits; disabled experts never run and change the logits iff they
were used, and equal transformers with that gate logit at -inf; forced experts run for every token;
top-p, skip threshold and capacity (drop and reroute) follow their rules; eval reports the experts per
token; bad values are usage errors. Qwen3-MoE, Mixtral, DeepSeek-V3 (sigmoid, groups, scaling),
OLMoE and Qwen2-MoE (shared expert, no renormalisation)."""
import argparse
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

import dynamic_checks
import hf_cases

CASES = ["qwen3_moe_e16k4", "mixtral_e8k2", "deepseek_v3_base", "olmoe_e8k2", "qwen2_moe_shared"]


def hf_model(d, model_type, **over):
    cfg = AutoConfig.from_pretrained(d)
    for k, v in over.items():
        setattr(cfg, k, v)
    m = AutoModelForCausalLM.from_pretrained(d, config=cfg, dtype=torch.float32, **hf_cases.EAGER).eval()
    hf_cases.mla_mscale_v4_fix(m, cfg, model_type)
    return m


def hf_logits(m, tokens):
    with torch.no_grad():
        return m(torch.tensor([tokens])).logits[0].double().numpy()


def gates(m):
    """{layer: gate module} of MoE blocks whose gate is a plain Linear (its output = the logits)."""
    out = {}
    for i, layer in enumerate(m.model.layers):
        blk = getattr(layer, "mlp", None) or getattr(layer, "block_sparse_moe", None)
        g = getattr(blk, "gate", None)
        if isinstance(g, torch.nn.Linear):
            out[i] = g
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    cases = {c[0]: c for c in hf_cases.CASES}
    failures = []
    for name in CASES:
        case = cases[name]
        model_type = case[1]
        d, tokens, _, _, _ = hf_cases.build_case(case, args.work, capture_routes=False)
        cfg = AutoConfig.from_pretrained(d)
        E = getattr(cfg, "num_experts", None) or getattr(cfg, "num_local_experts", None) or cfg.n_routed_experts
        k = cfg.num_experts_per_tok
        norm = model_type == "mixtral" or bool(getattr(cfg, "norm_topk_prob", False))
        scale = float(getattr(cfg, "routed_scaling_factor", 1.0) or 1.0)
        over = {"num_experts_per_tok": E}
        if model_type == "deepseek_v3":
            over["topk_group"] = cfg.n_group

        def dense_ref():
            return hf_logits(hf_model(d, model_type, **over), tokens)

        def masked_ref(layer, expert):
            m = hf_model(d, model_type)
            g = gates(m)
            if layer not in g:
                raise RuntimeError(f"{name}: layer {layer} has no Linear gate")

            def hook(mod, inp, out):
                out = out.clone()
                out[..., expert] = float("-inf")
                return out
            g[layer].register_forward_hook(hook)
            return hf_logits(m, tokens)

        m = dynamic_checks.Model(args.moe, d, tokens, args.work)
        before = len(failures)
        try:
            dynamic_checks.check_model(name, m, E, k, norm, scale, failures, dense_ref=dense_ref,
                                       masked_ref=masked_ref if model_type in ("mixtral", "qwen3_moe", "olmoe", "qwen2_moe") else None)
        except Exception as e:  # a crash is a failure of this case, the others still run
            failures.append(f"{name}: {type(e).__name__}: {e}")
        print(f"{name}: {'ok' if len(failures) == before else 'FAILED'}", flush=True)
    for f in failures:
        print("FAIL", f)
    print(f"{len(CASES)} cases, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
