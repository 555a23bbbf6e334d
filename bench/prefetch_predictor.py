"""Why the cross-layer expert prediction hits or misses: moe's predictor replayed in HF transformers.

For each MoE layer N > 0 of a qwen3_moe model, runs the first N_TOKENS held-out tokens (test_tokens.txt beside
the model) through transformers and applies layer N's router to the two inputs src/moe/moe_layer.c predicts
from: the previous MoE layer's normalised input rescaled channel-wise by g_N / g_{N-1} ("early"), and the
residual stream after the previous layer normalised with g_N ("late"). Prints, per layer, the share of the
experts layer N really uses that the early guess, the late guess and their union (what --stats calls
prefetch accuracy) contain, and what the router looks like: experts used, the effective number of experts
(exp of the entropy of the assignment counts), the five most used experts' share of the assignments, the
share of a token's experts that the previous token also used, the mean per-token router entropy, the mean logit gap between the k-th
and (k+1)-th expert, the spread (std) of the logits, and the rms error of the late guess's centred logits.
If MODEL_DIR/moe_predictor.safetensors exists (`moe fit-predictor`), the same three shares are given
for the fitted maps (what --prefetch --predictor uses) in the columns "fitted ...".

usage: prefetch_predictor.py MODEL_DIR [--tokens 128] [--json FILE]"""
import argparse
import json
import math
import os

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    ids = [int(x) for x in open(os.path.join(a.model, "test_tokens.txt")).read().split()[:a.tokens]]
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    k, E, eps = m.config.num_experts_per_tok, m.config.num_experts, m.config.rms_norm_eps
    cap = {}
    for i, lay in enumerate(m.model.layers):
        lay.post_attention_layernorm.register_forward_hook(lambda mod, inp, out, i=i: cap.__setitem__(("x", i), out[0]))
        lay.register_forward_hook(lambda mod, inp, out, i=i: cap.__setitem__(("out", i), (out[0] if isinstance(out, tuple) else out)[0]))
    m(torch.tensor([ids]))
    n = len(ids)
    centred = lambda z: z - z.mean(-1, keepdim=True)
    rows, hit_all, tot_all, fit_all = [], 0, 0, 0
    pred_path = os.path.join(a.model, "moe_predictor.safetensors")
    fitted = None
    if os.path.exists(pred_path):
        from safetensors.torch import load_file
        fitted = load_file(pred_path)

    def shares(act, early, late):
        he = hl = hu = 0
        for t in range(n):
            s, e, la = set(act[t].tolist()), set(early[t].tolist()), set(late[t].tolist())
            he, hl, hu = he + len(s & e), hl + len(s & la), hu + len(s & (e | la))
        return he, hl, hu
    for l, lay in enumerate(m.model.layers):
        g, x = lay.post_attention_layernorm.weight, cap[("x", l)]
        logit = lay.mlp.gate(x)
        p = torch.softmax(logit, -1)
        srt = torch.sort(logit, -1, descending=True)[0]
        act = torch.topk(logit, k, -1).indices
        q = np.bincount(act.flatten().numpy(), minlength=E) / (n * k)
        prev = sum(len(set(act[t].tolist()) & set(act[t - 1].tolist())) for t in range(1, n)) / ((n - 1) * k)
        r = {"layer": l, "experts_used": int((q > 0).sum()),
             "effective_experts": math.exp(-sum(v * math.log(v) for v in q if v > 0)),
             "top5_share": float(np.sort(q)[::-1][:5].sum()), "prev_token_share": prev,
             "router_entropy": float((-(p * p.log()).sum(-1)).mean()),
             "logit_gap_k": float((srt[:, k - 1] - srt[:, k]).mean()), "logit_std": float(logit.std(-1).mean())}
        if l > 0:
            gp, xp = m.model.layers[l - 1].post_attention_layernorm.weight, cap[("x", l - 1)]
            early_in = torch.where(gp != 0, xp * (g / gp), torch.zeros_like(xp))
            h = cap[("out", l - 1)]
            late_in = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * g
            ll = lay.mlp.gate(late_in)
            early, late = torch.topk(lay.mlp.gate(early_in), k, -1).indices, torch.topk(ll, k, -1).indices
            he, hl, hu = shares(act, early, late)
            r.update({"acc_early": he / (n * k), "acc_late": hl / (n * k), "acc_union": hu / (n * k),
                      "late_logit_err": float((centred(ll) - centred(logit)).pow(2).mean(-1).sqrt().mean())})
            hit_all, tot_all = hit_all + hu, tot_all + n * k
            if fitted:
                fw = lambda g, x: x @ fitted[f"layers.{l}.{g}.weight"].T + fitted[f"layers.{l}.{g}.bias"]
                fe = torch.topk(fw("early", early_in), k, -1).indices
                fl = torch.topk(fw("late", late_in), k, -1).indices
                fe_, fl_, fu_ = shares(act, fe, fl)
                r.update({"fit_early": fe_ / (n * k), "fit_late": fl_ / (n * k), "fit_union": fu_ / (n * k)})
                fit_all += fu_
        rows.append(r)
    print(f"{a.model}: {n} tokens, predicted layers' union accuracy {100 * hit_all / tot_all:.1f}%"
          + (f", with the fitted predictor {100 * fit_all / tot_all:.1f}%" if fitted else ""))
    print("| layer | early | late | union | experts used | effective experts | top-5 share | shared with previous token | "
          "router entropy | logit gap k/k+1 | logit std | late logit rms error |" +
          (" fitted early | fitted late | fitted union |" if fitted else ""))
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if fitted else ""))
    for r in rows:
        acc = (f"{100 * r['acc_early']:.1f}% | {100 * r['acc_late']:.1f}% | {100 * r['acc_union']:.1f}% | " if "acc_union" in r
               else "- | - | - | ")
        err = f"{r['late_logit_err']:.2f}" if "late_logit_err" in r else "-"
        if fitted:
            err += (f" | {100 * r['fit_early']:.1f}% | {100 * r['fit_late']:.1f}% | {100 * r['fit_union']:.1f}%" if "fit_union" in r
                    else " | - | - | -")
        print(f"| {r['layer']} | {acc}{r['experts_used']} | {r['effective_experts']:.1f} | {100 * r['top5_share']:.1f}% | "
              f"{100 * r['prev_token_share']:.1f}% | {r['router_entropy']:.2f} | {r['logit_gap_k']:.2f} | "
              f"{r['logit_std']:.2f} | {err} |")
    if a.json:
        json.dump({"model": a.model, "tokens": n, "acc_union": hit_all / tot_all,
                   "fit_union": fit_all / tot_all if fitted else None, "layers": rows}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
