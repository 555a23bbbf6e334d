"""The Python package (python/moe, ctypes over libmoe.so):
  1. `pip install --no-index --target DIR .` builds a wheel offline (taking libmoe.so from this build,
     MOE_BUILD_DIR) and the installed package imports and runs from DIR with its bundled library;
  2. logits as numpy arrays equal transformers' for tiny random models of several families (relative
     error <= 1e-4, as tests/hf), GQA with a sliding window, DeepSeek MLA with grouped routing, a
     shared expert with its gate; the routing hook as a Python callback reports every MoE layer and
     position with the experts transformers' router chose (a mismatch only at a near-tie of scores);
  3. eval_batch (several sessions in one forward pass) gives each session's logits as alone (<= 1e-5)
     on those models, through prefill, decode, join and leave;
  4. the tokenizer equals Hugging Face `tokenizers`; generate equals `moe run` (greedy and seeded);
     the sampler is greedy at temperature 0; the hidden-state hook sees every layer;
  5. expert offload options (mem_budget, cache) give the same logits;
  6. errors raise MoeError with libmoe's message and status; an exception in a hook reaches the caller;
     closed objects refuse use instead of crashing."""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

import hf_cases
from serve_fixture import tiny_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, flush=True)


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


def install(build, work):
    target = os.path.join(work, "site")
    env = dict(os.environ, MOE_BUILD_DIR=build)
    env.pop("MOE_LIBRARY", None)
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
                        "--disable-pip-version-check", "--upgrade", "--target", target, ROOT],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"pip install failed:\n{p.stdout}\n{p.stderr}")
    return target


def test_against_hf(moe, work):
    cases = {c[0]: c for c in hf_cases.CASES}
    for name in ("qwen3_moe_e16k4", "mixtral_sliding", "deepseek_v3_base", "qwen2_moe_shared"):
        d, tokens, ref, routes, _ = hf_cases.build_case(cases[name], work)
        m = moe.Model(d)
        got = m.logits(tokens)
        check(got.shape == ref.shape and got.dtype == np.float32, f"{name}: logits {got.shape} {got.dtype}")
        err = rel_err(got.astype(np.float64), ref)
        check(err <= 1e-4, f"{name}: logits relative error {err:.2e}")
        s = m.session()
        seen, ties = {}, 0
        s.set_route_hook(lambda r: seen.setdefault(r.layer, []).append(r))
        s.eval(tokens)
        for (layer, pos), (idx, w, scores) in routes.items():
            rs = [r for r in seen.get(layer, []) if pos in r.positions]
            if len(rs) != 1:
                check(False, f"{name}: layer {layer} position {pos} reported {len(rs)} times")
                continue
            r = rs[0]
            t = int(np.where(r.positions == pos)[0][0])
            if set(r.experts[t].tolist()) != set(idx):
                srt = np.sort(np.array(scores))[::-1]
                gap = abs(srt[len(idx) - 1] - srt[len(idx)])
                check(gap < 1e-5, f"{name}: layer {layer} pos {pos}: experts {r.experts[t]} vs HF {idx}")
                ties += 1
            check(np.max(np.abs(r.scores[t] - np.array(scores))) < 1e-4, f"{name}: layer {layer} pos {pos}: scores differ")
        check(sum(len(v) for v in seen.values()) == len({l for l, _ in routes}), f"{name}: hook calls {seen.keys()}")
        test_batch(moe, m, tokens, name)
        m.close()


def test_batch(moe, m, tokens, name):
    """Three sessions: b joins late, c leaves early; prefill pieces beside decoded tokens."""
    rng = np.random.default_rng(len(tokens))
    V = m.vocab_size
    seqs = [list(tokens), rng.integers(0, V, 10).tolist(), rng.integers(0, V, 14).tolist()]
    plan = [[(0, 7), (2, 10)], [(0, 1), (1, 5), (2, 1)], [(0, 1), (1, 1), (2, 3)], [(0, 1), (1, 3)], [(1, 1)]]
    alone = []
    for i, sq in enumerate(seqs):
        s = m.session()
        pieces, at = [], 0
        for step in plan:
            for j, n in step:
                if j == i:
                    pieces.append(s.eval(sq[at:at + n], all_positions=True))
                    at += n
        alone.append(np.concatenate(pieces) if pieces else None)
        s.close()
    ss = [m.session() for _ in seqs]
    at = [0] * len(seqs)
    got = [[] for _ in seqs]
    for step in plan:
        outs = moe.eval_batch([(ss[j], seqs[j][at[j]:at[j] + n]) for j, n in step], all_positions=True)
        for (j, n), o in zip(step, outs):
            got[j].append(o)
            at[j] += n
    for i in range(len(seqs)):
        err = rel_err(np.concatenate(got[i]).astype(np.float64), alone[i])
        check(err <= 1e-5 and ss[i].pos == at[i], f"{name}: batched session {i} differs from alone by {err:.2e}")
    for s in ss:
        s.close()


def test_text(moe, moe_bin, work):
    d = tiny_model(work)
    m = moe.Model(d)
    tok = m.tokenizer
    hf = HFTokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for text in ("The quick brown fox", "  spaces\tand\nnewlines ", "Ünïcödé ☃ 日本語", ""):
        ids = tok.encode(text)
        check(ids == hf.encode(text, add_special_tokens=False).ids, f"encode {text!r}: {ids}")
        check(tok.decode(ids) == hf.decode(ids), f"decode {text!r}")
    check(tok.encode("Hi", add_bos=True)[0] == 1, "add_bos")
    check(tok.piece(1) == "<s>" and tok.token_id("</s>") == 2, "pieces")
    prompt = "The quick brown fox"
    for flags, kw in ((["--temp", "0"], dict(temperature=0)),
                      (["--temp", "0.9", "--seed", "5"], dict(temperature=0.9, seed=5)),
                      (["--temp", "1.3", "--top-k", "7", "--top-p", "0.8", "--min-p", "0.02", "--seed", "3"],
                       dict(temperature=1.3, top_k=7, top_p=0.8, min_p=0.02, seed=3))):
        r = subprocess.run([moe_bin, "run", d, "-p", prompt, "-n", "12"] + flags, capture_output=True, text=True)
        got = m.generate(prompt, max_tokens=12, **kw)
        check(r.returncode == 0 and got == r.stdout[:-1], f"generate {kw}: {got!r} vs moe run {r.stdout!r}")
    text, ids = m.generate(prompt, max_tokens=10, temperature=0, return_ids=True)
    check(len(ids) <= 10 and tok.decode(ids) == text, f"return_ids: {ids} {text!r}")
    if len(text) > 6:
        check(m.generate(prompt, max_tokens=10, temperature=0, stop=text[3:5]) == text[:text.index(text[3:5])], "stop")
    logits = m.logits(tok.encode(prompt, add_bos=True))
    smp = moe.Sampler(m.vocab_size, temperature=0)
    check(all(smp.next(row) == int(np.argmax(row)) for row in logits), "greedy sampler != argmax")
    a, b = moe.Sampler(m.vocab_size, 1.0, 0, 1.0, 0.0, seed=9), moe.Sampler(m.vocab_size, 1.0, 0, 1.0, 0.0, seed=9)
    check([a.next(r) for r in logits] == [b.next(r) for r in logits], "seeded samplers differ")
    # hidden states
    s = m.session()
    calls = []
    s.set_hidden_hook(lambda layer, point, pos, x: calls.append((layer, point, x.shape)))
    s.eval([1, 2, 3])
    want = [(l, p, (3, m.info["hidden_size"])) for l in range(m.info["n_layers"]) for p in (0, 1)]
    check(calls == want, f"hidden hook calls {calls}")
    s.set_hidden_hook(None)
    # offload: experts read from disk under a budget give the same logits
    ids = tok.encode(prompt, add_bos=True)
    off = moe.Model(d, mem_budget=64 << 10, cache="lru")
    check(np.array_equal(off.logits(ids), m.logits(ids)), "mem_budget changed the logits")
    off.close()
    # errors
    try:
        moe.Model(os.path.join(work, "no_such_model"))
        check(False, "a missing model loaded")
    except moe.MoeError as e:
        check(e.status == 2 and "no_such_model" in str(e), f"missing model: {e.status} {e}")
    try:
        s.eval([m.vocab_size])
        check(False, "a token outside the vocabulary was accepted")
    except moe.MoeError as e:
        check(e.status == 2 and "vocabulary" in str(e), f"bad token: {e}")
    try:
        moe.eval_batch([(s, [1]), (s, [2])])
        check(False, "a batch with one session twice was accepted")
    except moe.MoeError as e:
        check(e.status == 1, f"same session twice: {e}")

    def boom(r):
        raise ValueError("boom")
    s.set_route_hook(boom)
    try:
        s.eval([5])
        check(False, "the hook's exception was lost")
    except ValueError:
        pass
    s.set_route_hook(None)
    check(s.eval([6]).shape == (m.vocab_size,), "eval after a failing hook")
    m.close()
    try:
        s.eval([1])
        check(False, "a session of a closed model evaluated")
    except moe.MoeError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    build = os.path.dirname(os.path.abspath(a.moe))
    site = install(build, a.work)
    os.environ.pop("MOE_LIBRARY", None)
    sys.path.insert(0, site)
    import moe
    check(moe.__file__.startswith(site), f"imported {moe.__file__}, not the installed package")
    check(os.path.exists(os.path.join(site, "moe", "libmoe.so")), "the wheel has no libmoe.so")
    check(moe.simd() in ("avx512", "avx2", "scalar") and moe.get_threads() >= 1, "simd/threads")
    with tempfile.TemporaryDirectory(dir=a.work) as w:
        test_against_hf(moe, w)
    test_text(moe, a.moe, a.work)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("python package ok")


if __name__ == "__main__":
    main()
