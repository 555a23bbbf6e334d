"""Train a small qwen3_moe on tinyshakespeare so that the offload benchmark has real routing patterns.

`moe train` is not merged yet, so this uses PyTorch and Hugging Face's Qwen3MoeForCausalLM and saves
the model with save_pretrained (config.json + model.safetensors), which moe loads like any checkpoint.
Tokens are bytes (vocab 256): no tokenizer needed, and `moe eval --tokens-file` can score the held-out
text. Data: the first 90% of tinyshakespeare for training, the last 10% for evaluation (data/README.md).
Random weights route almost uniformly and so flatter no cache; after a few hundred steps with the
load-balancing loss the experts specialise and routing becomes predictable across layers.

Writes OUT/ (the model, bf16 unless --save-dtype f32), OUT/test_tokens.txt (held-out bytes as ids) and
OUT/train_log.json. On a shared 2-core machine use --threads 1: with two threads a descheduled thread
stalls every OpenMP barrier and a step took 10x longer."""
import argparse
import json
import math
import os
import time

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.environ.get("MOE_SHARED_DATA", "/work/shared/data"), "tinyshakespeare.txt"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--moe-ff", type=int, default=256)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--max-minutes", type=float, default=40)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--save-dtype", choices=["f32", "bf16"], default="bf16", help="dtype of the saved weights")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    raw = open(a.data, "rb").read()
    split = int(len(raw) * 0.9)
    train = torch.tensor(list(raw[:split]), dtype=torch.long)
    test = list(raw[split:])
    cfg = Qwen3MoeConfig(vocab_size=256, hidden_size=a.hidden, intermediate_size=a.moe_ff, moe_intermediate_size=a.moe_ff,
                         num_hidden_layers=a.layers, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                         num_experts=a.experts, num_experts_per_tok=a.top_k, norm_topk_prob=True,
                         max_position_embeddings=1024, output_router_logits=True, router_aux_loss_coef=0.01,
                         tie_word_embeddings=False, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=10000.0)
    model = Qwen3MoeForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warm = max(1, a.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps)))))
    log, t0 = [], time.time()
    g = torch.Generator().manual_seed(a.seed)
    model.train()
    for step in range(a.steps):
        idx = torch.randint(0, len(train) - a.seq - 1, (a.batch,), generator=g)
        x = torch.stack([train[i:i + a.seq] for i in idx])
        out = model(input_ids=x, labels=x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0 or step == a.steps - 1:
            el = time.time() - t0
            rec = {"step": step, "loss": float(out.loss), "aux": float(out.aux_loss), "seconds": round(el, 1)}
            log.append(rec)
            print(json.dumps(rec), flush=True)
            if el > a.max_minutes * 60:
                print(f"stopping at step {step}: time limit", flush=True)
                break
    model.eval()
    model.config.output_router_logits = False
    os.makedirs(a.out, exist_ok=True)
    if a.save_dtype == "bf16":
        model = model.to(torch.bfloat16)
    model.save_pretrained(a.out, safe_serialization=True)
    open(os.path.join(a.out, "test_tokens.txt"), "w").write(" ".join(map(str, test)))
    json.dump({"args": vars(a), "log": log}, open(os.path.join(a.out, "train_log.json"), "w"), indent=1)
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
