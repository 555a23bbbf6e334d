"""Dynamic routing and steering on the families moe checks against transformers 5 (tests/hf5/families.py):
GLM-4.5 (sigmoid, bias, groups, scaling), MiniMax-M2 (sigmoid, bias), ERNIE 4.5 (bias-corrected
softmax choice), Granite (softmax over the top-k logits) and Phi-3.5-MoE (SparseMixer, which picks
its own two experts). The checks are tests/hf/dynamic_checks.py's: top-p 1 with k = E against
transformers 5 run with k = E (not for SparseMixer, whose weights are no probabilities), options that
must change nothing, disable, force, top-p, skip threshold, capacity, experts per token, bad values."""
import argparse
import os
import sys

import torch
from transformers import AutoConfig, AutoModelForCausalLM

import dynamic_checks
import families
import test_families_logits

CASES = ["glm4_moe_groups", "minimax_m2_rotary_dim", "ernie_e8k2", "granitemoe_multipliers", "phimoe_jitter"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    cases = {c[0]: c for c in test_families_logits.CASES}
    failures = []
    for name in CASES:
        case = cases[name]
        model_type = case[1]
        before = len(failures)
        try:
            d, tokens, _, _, _ = families.build_case(case, args.work)
            cfg = families.make_config(model_type, dict(case[2]))
            E = next(getattr(cfg, a) for a in ("n_routed_experts", "num_local_experts", "moe_num_experts", "num_experts")
                     if getattr(cfg, a, None))
            k = next(getattr(cfg, a) for a in ("num_experts_per_tok", "moe_k") if getattr(cfg, a, None))
            own = model_type == "phimoe"
            norm = own or model_type in ("granitemoe", "ernie4_5_moe", "minimax_m2") or bool(getattr(cfg, "norm_topk_prob", False))
            scale = float(getattr(cfg, "routed_scaling_factor", 1.0) or 1.0) if model_type == "glm4_moe" else 1.0

            def dense_ref():
                c = families.make_config(model_type, dict(case[2]))
                for a in ("num_experts_per_tok", "moe_k"):
                    if getattr(c, a, None):
                        setattr(c, a, E)
                if getattr(c, "n_group", None):
                    c.topk_group = c.n_group
                torch.manual_seed(1234)
                m = AutoModelForCausalLM.from_config(c, dtype=torch.float32).eval()
                families.randomize(m, model_type, 1234)
                with torch.no_grad():
                    return m(torch.tensor([tokens])).logits[0].double().numpy()

            m = dynamic_checks.Model(args.moe, d, tokens, args.work)
            dynamic_checks.check_model(name, m, E, k, norm, scale, failures, own_count=own,
                                       dense_ref=None if own else dense_ref)
        except Exception as e:  # a crash is a failure of this case, the others still run
            failures.append(f"{name}: {type(e).__name__}: {e}")
        print(f"{name}: {'ok' if len(failures) == before else 'FAILED'}", flush=True)
    for f in failures:
        print("FAIL", f)
    print(f"{len(CASES)} cases, {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
