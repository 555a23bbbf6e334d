"""test_qwen3_next.py - moe against transformers 5.x on Qwen3-Next (model_type qwen3_next): hybrid gated
DeltaNet linear attention and gated full attention, high-sparsity MoE with a gated shared expert.
Checks per case: see hf5_compare.py. The cases cover: several key/value head groupings of the linear
attention, prompts spanning several 64-token delta-rule chunks and the session's 256-token chunks (the
chunked form continuing from a recurrent state and convolution history), a dense layer among MoE ones,
attention biases, tied embeddings, bf16 weights, and a folder in the layout of the released checkpoints
(config.json as transformers 4.57 wrote it: full_attention_interval, rope_theta and
partial_rotary_factor at the top level; unused multi-token-prediction tensors "mtp.*"; experts fused as
transformers 5 can save them). Several sessions of these models in one batched step match each alone
(hf5_compare.batch_check). Then hostile variants of a folder must fail with one clear line."""
import argparse
import json
import os
import sys

import torch

import hf5_compare
from hf_cases import fuse_experts_like_v5

BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
            linear_key_head_dim=8, linear_value_head_dim=12, num_experts=8, num_experts_per_tok=2,
            moe_intermediate_size=16, shared_expert_intermediate_size=20, max_position_embeddings=512)


def C(**kw):
    d = dict(BASE)
    d.update(kw)
    return d


class Routes:
    """Per (layer, position): the experts Qwen3NextTopKRouter chose, their weights and the softmax scores."""

    def __init__(self, model, cfg):
        self.routes = {}
        for name, mod in model.named_modules():
            parts = name.split(".")
            if len(parts) == 5 and parts[:2] == ["model", "layers"] and parts[3:] == ["mlp", "gate"]:
                mod.register_forward_hook(self._hook(int(parts[2])))

    def _hook(self, layer):
        def fn(mod, inputs, output):
            logits, w, idx = output
            scores = torch.softmax(logits.float(), dim=-1)
            for t in range(idx.shape[0]):
                self.routes[(layer, t)] = (idx[t].tolist(), w[t].float().tolist(), scores[t].tolist())
        return fn


def randomize(model, gen):
    hf5_compare.randomize(model, gen, centred_norms=True)


def released_layout(out_dir):
    """Rewrite a transformers 5 save into the released Qwen3-Next folder's form."""
    path = os.path.join(out_dir, "config.json")
    cfg = json.load(open(path))
    every = cfg["layer_types"].index("full_attention") + 1
    assert all((t == "full_attention") == ((i + 1) % every == 0) for i, t in enumerate(cfg["layer_types"]))
    del cfg["layer_types"]
    rp = cfg.pop("rope_parameters")
    cfg.update(full_attention_interval=every, rope_theta=rp["rope_theta"], partial_rotary_factor=rp["partial_rotary_factor"],
               rope_scaling=None, use_sliding_window=False, torch_dtype="float32", transformers_version="4.57.0.dev0")
    json.dump(cfg, open(path, "w"), indent=2)
    from safetensors.torch import load_file, save_file
    st = os.path.join(out_dir, "model.safetensors")
    sd = load_file(st)
    sd["mtp.fc.weight"] = torch.zeros(4, 4)
    sd["mtp.norm.weight"] = torch.ones(4)
    save_file(sd, st, metadata={"format": "pt"})
    fuse_experts_like_v5(out_dir)


CASES = [
    dict(name="q3n_base", config=C(), dtype="f32", seq=21),
    dict(name="q3n_chunks", config=C(layer_types=["full_attention", "linear_attention", "linear_attention", "full_attention"],
                                     linear_num_key_heads=1, linear_num_value_heads=3, linear_key_head_dim=16,
                                     linear_value_head_dim=16, linear_conv_kernel_dim=3, mlp_only_layers=[1],
                                     norm_topk_prob=False, attention_bias=True, partial_rotary_factor=0.5), dtype="f32", seq=150),
    dict(name="q3n_long", config=C(hidden_size=32, num_hidden_layers=3, layer_types=["linear_attention", "full_attention",
                                   "linear_attention"], num_experts=4, moe_intermediate_size=8, shared_expert_intermediate_size=8),
         dtype="f32", seq=300),
    dict(name="q3n_e64k8_tied", config=C(num_experts=64, num_experts_per_tok=8, moe_intermediate_size=8,
                                         linear_num_key_heads=4, linear_num_value_heads=4, tie_word_embeddings=True),
         dtype="f32", seq=25),
    dict(name="q3n_bf16", config=C(num_hidden_layers=2, layer_types=["linear_attention", "full_attention"]), dtype="bf16", seq=16),
    dict(name="q3n_released_layout", config=C(num_hidden_layers=4), dtype="f32", seq=18, rewrite=released_layout),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    failures = []
    for case in CASES:
        if args.only and args.only not in case["name"]:
            continue
        case = dict(case, model_type="qwen3_next", routes=Routes, randomize=randomize)
        try:
            hf5_compare.check_case(args.moe, case, args.work, failures)
        except Exception as e:  # a crash in one case must not hide the others
            failures.append(f"{case['name']}: {e}")
            print(f"{case['name']}: ERROR {e}", flush=True)
    folders = [os.path.join(args.work, n) for n in ("q3n_base", "q3n_chunks", "q3n_bf16")]
    folders = [d for d in folders if os.path.isdir(d) and (not args.only or args.only in os.path.basename(d))]
    if folders:
        hf5_compare.batch_check(args.moe, folders, failures)
    good = os.path.join(args.work, "q3n_base")
    if os.path.isdir(good) and not args.only:
        bad = [
            ("value_heads", dict(edit_config=lambda c: c.update(linear_num_value_heads=3)), "multiple of linear_num_key_heads"),
            ("layer_type", dict(edit_config=lambda c: c["layer_types"].__setitem__(0, "mamba")), "layer_types[0]"),
            ("conv_shape", dict(edit_tensors=lambda sd: sd.__setitem__("model.layers.0.linear_attn.conv1d.weight",
                                                                         torch.zeros(80, 1, 3))), "conv1d.weight"),
            ("no_A_log", dict(edit_tensors=lambda sd: sd.pop("model.layers.1.linear_attn.A_log")), "A_log"),
            ("qproj_ungated", dict(edit_tensors=lambda sd: sd.__setitem__("model.layers.3.self_attn.q_proj.weight",
                                                                           torch.zeros(64, 48))), "q_proj"),
        ]
        for name, kw, expect in bad:
            msg = hf5_compare.bad_input(args.moe, good, args.work, name, expect=expect, **kw)
            if msg:
                failures.append(msg)
        print(f"{len(bad)} hostile folders checked", flush=True)
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all cases match Hugging Face transformers 5")


if __name__ == "__main__":
    main()
