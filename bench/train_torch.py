"""train_torch.py - the PyTorch peer of `moe train`: the same decoder-only MoE (RMSNorm, RoPE on half
pairs, per-head q/k RMSNorm, grouped-query attention, SwiGLU experts behind a softmax top-k router
with optional renormalisation, optional shared experts and leading dense layers), the same losses
(cross-entropy + Switch load-balancing loss + router z-loss), the same AdamW (decay on matrices
only), clipping, warmup + cosine schedule and batch shapes, read from the train.json that
`moe train` writes. It runs on the CPU with a fixed number of threads and reports training tokens
per second measured the same way as moe (forward + backward + optimizer step; batch sampling and
evaluation excluded), so bench/routers.py can put the two side by side in one run.

The MoE block is written the way efficient PyTorch code does it (HF Mixtral/Qwen3-MoE): tokens are
grouped per expert with one sort, each expert runs on its rows, results are index_add-ed back.
Only the softmax_topk router is implemented here; it is the router of the throughput comparison.

Usage: train_torch.py --config train.json --data FILE [--steps N] [--threads T] [--json]"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(T, hd, theta):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, H, KV, hd = c["d_model"], c["heads"], c["kv_heads"], c["head_dim"]
        self.H, self.KV, self.hd = H, KV, hd
        self.q = nn.Linear(d, H * hd, bias=False)
        self.k = nn.Linear(d, KV * hd, bias=False)
        self.v = nn.Linear(d, KV * hd, bias=False)
        self.o = nn.Linear(H * hd, d, bias=False)
        self.qk_norm = c["qk_norm"]
        if self.qk_norm:
            self.qn = RMSNorm(hd, c["rms_eps"])
            self.kn = RMSNorm(hd, c["rms_eps"])

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.H, self.hd)
        k = self.k(x).view(B, T, self.KV, self.hd)
        v = self.v(x).view(B, T, self.KV, self.hd)
        if self.qk_norm:
            q, k = self.qn(q), self.kn(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.KV != self.H:
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(o.transpose(1, 2).reshape(B, T, -1))


class SwiGLU(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.g = nn.Linear(d, ff, bias=False)
        self.u = nn.Linear(d, ff, bias=False)
        self.d = nn.Linear(ff, d, bias=False)

    def forward(self, x):
        return self.d(F.silu(self.g(x)) * self.u(x))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.E, self.k, self.norm = c["experts"], c["top_k"], c["norm_topk"]
        self.gate = nn.Linear(c["d_model"], self.E, bias=False)
        self.experts = nn.ModuleList([SwiGLU(c["d_model"], c["d_expert"]) for _ in range(self.E)])
        self.shared = SwiGLU(c["d_model"], c["shared"] * c["d_expert"]) if c["shared"] > 0 else None
        self.balance, self.zc = c["balance_loss"], c["z_loss"]

    def forward(self, x):
        B, T, d = x.shape
        h = x.reshape(-1, d)
        logits = self.gate(h)
        p = logits.softmax(-1)
        w, idx = p.topk(self.k, -1)
        if self.norm:
            w = w / w.sum(-1, keepdim=True)
        flat = idx.reshape(-1)
        order = flat.argsort(stable=True)
        counts = torch.bincount(flat, minlength=self.E).tolist()
        tok = order // self.k
        wts = w.reshape(-1)[order]
        out = torch.zeros_like(h)
        start = 0
        for e, n in enumerate(counts):
            if n:
                t = tok[start:start + n]
                out.index_add_(0, t, self.experts[e](h[t]) * wts[start:start + n, None])
            start += n
        if self.shared is not None:
            out = out + self.shared(h)
        aux = 0.0
        if self.balance:
            f = torch.bincount(flat, minlength=self.E).float() / flat.numel()
            aux = aux + self.balance * self.E * (f * p.mean(0)).sum()
        if self.zc:
            aux = aux + self.zc * torch.logsumexp(logits, -1).pow(2).mean()
        return out.view(B, T, d), aux


class Block(nn.Module):
    def __init__(self, c, moe):
        super().__init__()
        self.n1 = RMSNorm(c["d_model"], c["rms_eps"])
        self.attn = Attention(c)
        self.n2 = RMSNorm(c["d_model"], c["rms_eps"])
        self.moe = moe
        self.ffn = MoE(c) if moe else SwiGLU(c["d_model"], c["d_ff"])

    def forward(self, x, cos, sin):
        x = x + self.attn(self.n1(x), cos, sin)
        if self.moe:
            y, aux = self.ffn(self.n2(x))
        else:
            y, aux = self.ffn(self.n2(x)), 0.0
        return x + y, aux


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.emb = nn.Embedding(c["vocab"], c["d_model"])
        self.blocks = nn.ModuleList(
            [Block(c, c["experts"] > 0 and l >= c["dense_layers"]) for l in range(c["layers"])])
        self.norm = RMSNorm(c["d_model"], c["rms_eps"])
        self.head = nn.Linear(c["d_model"], c["vocab"], bias=False)
        cos, sin = rope_tables(c["seq_len"], c["head_dim"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        std, ostd = c["init_std"], c["init_std"] / math.sqrt(2 * c["layers"])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0, ostd if name.endswith(("o.weight", "d.weight")) else std)

    def forward(self, x, y):
        h = self.emb(x)
        aux = 0.0
        for b in self.blocks:
            h, a = b(h, self.cos, self.sin)
            aux = aux + a
        logits = self.head(self.norm(h))
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        return ce, aux


def lr_at(c, step):
    if c["warmup"] > 0 and step <= c["warmup"]:
        return c["lr"] * step / c["warmup"]
    span = c["steps"] - c["warmup"]
    prog = min(1.0, (step - c["warmup"]) / span) if span > 0 else 1.0
    return c["min_lr"] + 0.5 * (c["lr"] - c["min_lr"]) * (1 + math.cos(math.pi * prog))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c = json.load(open(a.config))
    if a.steps:
        c["steps"] = a.steps
    if c["experts"] > 0 and c["router"] != "softmax_topk":
        sys.exit("train_torch.py: only the softmax_topk router is implemented")
    torch.manual_seed(c["seed"])
    data = torch.tensor(list(open(a.data, "rb").read()), dtype=torch.long)
    n_train = int(len(data) * (1 - c["val_fraction"]))
    model = Model(c)
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]}, {"params": rest, "weight_decay": 0.0}],
                            lr=c["lr"], betas=(c["beta1"], c["beta2"]), eps=c["adam_eps"])
    B, T = c["batch"], c["seq_len"]
    g = torch.Generator().manual_seed(c["seed"])
    t_train, losses = 0.0, []
    for step in range(1, c["steps"] + 1):
        off = torch.randint(0, n_train - T - 1, (B,), generator=g)
        x = torch.stack([data[o:o + T] for o in off])
        y = torch.stack([data[o + 1:o + T + 1] for o in off])
        t0 = time.perf_counter()
        for grp in opt.param_groups:
            grp["lr"] = lr_at(c, step)
        ce, aux = model(x, y)
        opt.zero_grad(set_to_none=True)
        (ce + aux).backward()
        if c["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
        opt.step()
        t_train += time.perf_counter() - t0
        losses.append(ce.item())
        if a.json:
            print(json.dumps({"step": step, "loss": losses[-1], "tok_per_s": step * B * T / t_train}), flush=True)
    tail = losses[-max(1, len(losses) // 10):]
    print(json.dumps({"peer": "torch", "steps": c["steps"], "threads": a.threads, "train_loss": sum(tail) / len(tail),
                      "tok_per_s": c["steps"] * B * T / t_train, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
