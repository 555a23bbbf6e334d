"""test_llama4_text.py - moe against transformers 5.x on Llama 4 (model_type llama4_text, and the text part
of the multimodal "llama4" checkpoints). Checks per case: see hf5_compare.py (prefill logits, decoding one
token at a time against the prefill, routes, parameter counts, greedy token). The cases cover: dense-only
and interleaved MoE / dense layers (Scout: every layer MoE; Maverick: every other, without q/k norm), top-1
and top-2 sigmoid routing whose weight scales the expert's input, with the shared expert; chunked local
attention with prompts of several chunks (chunks of 5 and 7 positions; 64 over 300 tokens, past the
session's 256-token pieces), no chunking at all, NoPE layers with temperature tuning switched on early
(small floor_scale), the llama3 RoPE scaling Scout ships (low_freq_factor == high_freq_factor),
attention biases, tied embeddings, bf16 weights, and the released multimodal folder's layout (config under
"text_config", tensors under "language_model.", an unused vision tower). Several sessions in one batched
step match each alone (hf5_compare.batch_check). Then hostile variants of a folder must fail with one
clear line."""
import argparse
import json
import os
import sys

import torch

import hf5_compare

BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=24, intermediate_size_mlp=40, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=1,
            attention_chunk_size=5, floor_scale=4, attn_scale=0.3, max_position_embeddings=512)


def C(**kw):
    d = dict(BASE)
    d.update(kw)
    return d


class Routes:
    """Per (layer, position): the experts Llama4Router chose, their weights sigmoid(logit), and sigmoid of
    every logit as the scores."""

    def __init__(self, model, cfg):
        self.routes = {}
        self.k = cfg.num_experts_per_tok
        for name, mod in model.named_modules():
            parts = name.split(".")
            if len(parts) == 5 and parts[:2] == ["model", "layers"] and parts[3:] == ["feed_forward", "router"]:
                mod.register_forward_hook(self._hook(int(parts[2])))

    def _hook(self, layer):
        def fn(mod, inputs, output):
            _, logits = output
            top, idx = torch.topk(logits.float(), self.k, dim=-1)
            w, scores = torch.sigmoid(top), torch.sigmoid(logits.float())
            for t in range(idx.shape[0]):
                self.routes[(layer, t)] = (idx[t].tolist(), w[t].tolist(), scores[t].tolist())
        return fn


def multimodal_layout(out_dir):
    """Rewrite a Llama4ForCausalLM save into the released Llama4ForConditionalGeneration folder's form."""
    path = os.path.join(out_dir, "config.json")
    text = json.load(open(path))
    cfg = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "text_config": text,
           "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 8}, "boi_token_index": 90,
           "eoi_token_index": 91, "image_token_index": 92, "tie_word_embeddings": False}
    text["attn_temperature_tuning"] = 4   # a number, as in Scout's config.json
    json.dump(cfg, open(path, "w"), indent=2)
    from safetensors.torch import load_file, save_file
    st = os.path.join(out_dir, "model.safetensors")
    sd = {"language_model." + k: v for k, v in load_file(st).items()}
    sd["vision_model.patch_embedding.linear.weight"] = torch.zeros(8, 12)
    sd["multi_modal_projector.linear_1.weight"] = torch.zeros(48, 8)
    save_file(sd, st, metadata={"format": "pt"})


SCOUT_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 16.0, "low_freq_factor": 1.0,
              "high_freq_factor": 1.0, "original_max_position_embeddings": 8}

CASES = [
    dict(name="l4_dense", config=C(moe_layers=[]), dtype="f32", seq=19),
    dict(name="l4_scout_like", config=C(rope_parameters=dict(SCOUT_ROPE)), dtype="f32", seq=23),
    dict(name="l4_maverick_like", config=C(num_local_experts=8, interleave_moe_layer_step=2, use_qk_norm=False,
                                           no_rope_layers=[1, 0, 1, 0], attention_chunk_size=7), dtype="f32", seq=20),
    dict(name="l4_top2_bias", config=C(num_local_experts=8, num_experts_per_tok=2, attention_bias=True,
                                       moe_layers=[0, 2], layer_types=["chunked_attention", "full_attention",
                                                                       "chunked_attention", "full_attention"]),
         dtype="f32", seq=17),
    dict(name="l4_nochunk_tied", config=C(attention_chunk_size=None, tie_word_embeddings=True, num_local_experts=16,
                                          num_experts_per_tok=3, no_rope_layer_interval=2), dtype="f32", seq=21),
    dict(name="l4_long", config=C(hidden_size=32, num_hidden_layers=3, attention_chunk_size=64, floor_scale=50,
                                  no_rope_layer_interval=2), dtype="f32", seq=300),
    dict(name="l4_bf16", config=C(num_local_experts=8), dtype="bf16", seq=16),
    dict(name="l4_multimodal_layout", config=C(rope_parameters=dict(SCOUT_ROPE)), dtype="f32", seq=15,
         rewrite=multimodal_layout),
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
        case = dict(case, model_type="llama4_text", routes=Routes)
        try:
            hf5_compare.check_case(args.moe, case, args.work, failures)
        except Exception as e:  # a crash in one case must not hide the others
            failures.append(f"{case['name']}: {e}")
            print(f"{case['name']}: ERROR {e}", flush=True)
    folders = [os.path.join(args.work, n) for n in ("l4_scout_like", "l4_top2_bias", "l4_bf16", "l4_multimodal_layout")]
    folders = [d for d in folders if os.path.isdir(d) and (not args.only or args.only in os.path.basename(d))]
    if folders:
        hf5_compare.batch_check(args.moe, folders, failures)
    good = os.path.join(args.work, "l4_scout_like")
    if os.path.isdir(good) and not args.only:
        gu = "model.layers.0.feed_forward.experts.gate_up_proj"
        bad = [
            ("no_rope_short", dict(edit_config=lambda c: c.update(no_rope_layers=[1, 0])), "no_rope_layers"),
            ("no_rope_two", dict(edit_config=lambda c: c.update(no_rope_layers=[1, 2, 1, 0])), "no_rope_layers"),
            ("moe_layer_out", dict(edit_config=lambda c: c.update(moe_layers=[0, 4])), "moe_layers"),
            ("chunk_null", dict(edit_config=lambda c: c.update(attention_chunk_size=None)), "attention_chunk_size"),
            ("chunk_zero", dict(edit_config=lambda c: c.update(attention_chunk_size=0)), "attention_chunk_size"),
            ("floor_zero", dict(edit_config=lambda c: c.update(floor_scale=0)), "floor_scale"),
            ("layer_type", dict(edit_config=lambda c: c["layer_types"].__setitem__(1, "sliding_attention")),
             "layer_types[1]"),
            ("top_k", dict(edit_config=lambda c: c.update(num_experts_per_tok=5)), "num_experts_per_tok"),
            ("experts_shape", dict(edit_tensors=lambda sd: sd.__setitem__(gu, torch.zeros(4, 24, 96))), "gate_up_proj"),
            ("no_router", dict(edit_tensors=lambda sd: sd.pop("model.layers.2.feed_forward.router.weight")), "router"),
            ("no_shared", dict(edit_tensors=lambda sd: sd.pop("model.layers.1.feed_forward.shared_expert.up_proj.weight")),
             "shared_expert"),
            ("experts_i8", dict(edit_tensors=lambda sd: sd.__setitem__(gu, torch.zeros(4, 48, 48, dtype=torch.int8))),
             "gate_up_proj"),
            ("no_text_config", dict(edit_config=lambda c: c.update(model_type="llama4")), "text_config"),
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
