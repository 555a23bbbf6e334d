"""moe on llama.cpp GGUF files (docs/GGUF.md):
  1. moe's converter of every ggml type it reads gives, bit for bit, what the gguf package's numpy
     dequantizer gives, on raw random blocks (every quant byte value; random finite scales, f16
     subnormals and negative scales included), through tests/tools/weights_dump;
  2. for each supported architecture, a tiny random transformers model written as GGUF (gguf_case.py:
     llama.cpp's conventions, quantized tensors of several types): `moe logits` matches transformers
     run on the weights the file decodes to (relative error <= 1e-4), stepwise decoding matches the
     prefill (1e-5), --no-mmap matches the mapped run, `moe generate` continues greedily like
     transformers' argmax, `moe info --json` says format "gguf" and counts transformers' parameters,
     and MoE models give the same logits with their experts read from the file under --mem-budget;
  3. broken files (truncated at many points, corrupted header fields) end in exit code 2 with one
     line naming the file, never a crash;
  4. `moe run` on a GGUF file uses the tokenizer.json beside it, and without one says so."""
import argparse
import json
import os
import struct
import subprocess
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

import gguf_case

TOL = 1e-4
FAIL = []


def check(ok, msg):
    if not ok:
        FAIL.append(msg)
        print("FAIL:", msg, flush=True)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, **kw)
    try:   # messages must be UTF-8 (they may quote names from the file)
        p.stderr = p.stderr.decode("utf-8")
    except UnicodeDecodeError:
        check(False, f"{' '.join(cmd[:3])}: stderr is not UTF-8: {p.stderr[:200]!r}")
        p.stderr = p.stderr.decode("utf-8", "replace")
    p.stdout = p.stdout.decode("utf-8", "replace")
    return p


def must(cmd):
    p = run(cmd)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


# ---- 1. converters against the gguf package's dequantizer ---------------------------------------

def random_blocks(qtype, n_blocks, rng):
    bs, ts = gguf.constants.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)

    def f16s(k):
        mant = rng.uniform(1, 2, size=k).astype(np.float32)
        v = np.ldexp(mant, rng.integers(-26, -3, size=k)) * np.where(rng.random(k) < 0.25, -1, 1)
        return v.astype(np.float16).view(np.uint8).reshape(k, 2)
    if qtype in (Q.F32, Q.F16, Q.BF16):
        vals = rng.standard_normal(n_blocks * bs).astype(np.float32)
        if qtype == Q.F32:
            return vals.view(np.uint8).reshape(n_blocks, 4)
        if qtype == Q.F16:
            return vals.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        return gguf.quants.quantize(vals, Q.BF16).reshape(n_blocks, 2)
    if qtype == Q.Q6_K:
        raw[:, 208:210] = f16s(n_blocks)
    elif qtype == Q.MXFP4:
        raw[:, 0] = rng.integers(100, 141, size=n_blocks)
    elif qtype in (Q.Q4_1, Q.Q5_1, Q.Q4_K, Q.Q5_K):
        raw[:, 0:2] = f16s(n_blocks)
        raw[:, 2:4] = f16s(n_blocks)
    else:
        raw[:, 0:2] = f16s(n_blocks)
    return raw


def test_converters(work, tools, rng):
    dump = os.path.join(tools, "weights_dump")
    types = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.MXFP4]
    path = os.path.join(work, "types.gguf")
    w = gguf.GGUFWriter(path, "llama")
    expect = {}
    for qt in types:
        bs, _ = gguf.constants.GGML_QUANT_SIZES[qt]
        rows, cols = 3, bs * (1 if bs == 256 else 8) * 2
        blocks = random_blocks(qt, rows * cols // bs, rng)
        data = blocks.reshape(rows, -1)
        name = f"t.{qt.name.lower()}"
        if qt == Q.F32:
            w.add_tensor(name, data.view(np.float32).reshape(rows, cols))
        elif qt == Q.F16:
            w.add_tensor(name, data.view(np.float16).reshape(rows, cols))
        else:
            w.add_tensor(name, data, raw_dtype=qt)
        expect[name] = gguf.quants.dequantize(data, qt).reshape(rows, cols).astype(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    listing = must([dump, path])
    for name, ref in expect.items():
        out = os.path.join(work, name + ".f32")
        must([dump, path, name, out])
        got = np.fromfile(out, dtype=np.float32).reshape(ref.shape)
        same = np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        check(same, f"{name}: moe's converter differs from gguf's dequantizer at {int(np.sum(got != ref))} of {ref.size} values")
    print(f"converters: {len(expect)} types bit for bit as the gguf package's dequantizer:\n" + listing.strip(), flush=True)


# ---- 2. models -----------------------------------------------------------------------------------

K = {"embd": Q.Q6_K, "out": Q.Q6_K, "attn": Q.Q4_K, "ffn": Q.Q5_K, "exps": Q.Q4_K, "shexp": Q.Q6_K}
W256 = dict(hidden_size=256, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2, vocab_size=160,
            num_hidden_layers=2, max_position_embeddings=256)


def C(**kw):
    d = dict(W256)
    d.update(kw)
    return d


CASES = [
    # name, model_type, config, quantization plan, seq, converter options
    ("llama_q8", "llama", C(hidden_size=64, intermediate_size=96, attention_bias=True),
     {"embd": Q.Q8_0, "out": Q.Q8_0, "attn": Q.Q8_0, "ffn": Q.Q8_0}, 17, {}),
    ("llama3_kquants", "llama", C(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
     K, 33, {}),
    ("mixtral_q4k", "mixtral", C(num_local_experts=4, num_experts_per_tok=2),
     {"embd": Q.Q4_0, "out": Q.F16, "attn": Q.Q8_0, "exps": Q.Q4_K}, 19, {}),
    ("mixtral_split_experts", "mixtral", C(hidden_size=64, intermediate_size=64, num_local_experts=3, num_experts_per_tok=2),
     {"attn": Q.Q5_0, "exps": Q.Q8_0, "embd": Q.Q5_1}, 12, {"legacy_experts": True}),
    ("qwen2_legacy_quants_tied", "qwen2", C(hidden_size=64, intermediate_size=128, tie_word_embeddings=True),
     {"embd": Q.Q4_1, "attn": Q.Q5_0, "ffn": Q.Q5_1}, 15, {}),
    ("qwen2_moe_kq", "qwen2_moe", C(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=256,
                                    shared_expert_intermediate_size=256),
     {"embd": Q.Q8_0, "out": Q.Q6_K, "attn": Q.Q5_K, "exps": Q.Q6_K, "shexp": Q.Q8_0}, 21, {}),
    ("qwen3_moe_kq_bf16", "qwen3_moe", C(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256, head_dim=64,
                                         norm_topk_prob=True),
     {"embd": Q.Q6_K, "out": Q.BF16, "attn": Q.BF16, "exps": Q.Q4_K}, 18, {}),
    ("qwen3_moe_mxfp4", "qwen3_moe", C(hidden_size=64, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                                       head_dim=32, norm_topk_prob=True),
     {"embd": Q.Q8_0, "out": Q.Q8_0, "attn": Q.F16, "exps": Q.MXFP4}, 14, {}),
    ("qwen3_dense", "qwen3", C(head_dim=64), {"embd": Q.Q8_0, "attn": Q.Q4_K, "ffn": Q.Q6_K, "out": Q.Q8_0}, 16, {}),
    ("olmoe_q40", "olmoe", C(hidden_size=64, intermediate_size=64, num_experts=8, num_experts_per_tok=2,
                            num_key_value_heads=4, clip_qkv=0.8),
     {"embd": Q.Q8_0, "out": Q.Q8_0, "attn": Q.Q4_0, "exps": Q.Q4_0}, 13, {}),
    ("deepseek_v2_q8", "deepseek_v2", C(hidden_size=64, intermediate_size=64, n_routed_experts=8, num_experts_per_tok=2,
                                        moe_intermediate_size=32, n_shared_experts=2, first_k_dense_replace=1,
                                        num_key_value_heads=4, topk_method="greedy", q_lora_rank=None, kv_lora_rank=32,
                                        qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16),
     {"embd": Q.Q8_0, "out": Q.Q8_0, "attn": Q.Q8_0, "ffn": Q.Q8_0, "exps": Q.Q8_0, "shexp": Q.Q8_0}, 15, {"old_mla_keys": True}),
    ("deepseek_v3_yarn", "deepseek_v3", C(hidden_size=64, intermediate_size=64, n_routed_experts=16, num_experts_per_tok=4,
                                          moe_intermediate_size=32, n_shared_experts=1, first_k_dense_replace=1,
                                          n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
                                          num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16,
                                          qk_rope_head_dim=8, v_head_dim=16, num_hidden_layers=3,
                                          rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                                                        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.8,
                                                        "mscale_all_dim": 0.8}),
     {"embd": Q.Q8_0, "out": Q.Q4_0, "attn": Q.Q8_0, "ffn": Q.Q4_0, "exps": Q.Q8_0, "shexp": Q.Q4_1}, 20, {}),
]


def test_models(moe, work, only):
    import torch
    for case in CASES:
        name = case[0]
        if only and only not in name:
            continue
        try:
            path, tokens, ref, model = gguf_case.build(case, work)
            toks = ",".join(map(str, tokens))
            out, step, nm = (os.path.join(work, f"{name}.{s}.json") for s in ("logits", "step", "nommap"))
            must([moe, "logits", path, "--tokens", toks, "--out", out])
            ours = np.array(json.load(open(out))["logits"], dtype=np.float64)
            err = rel_err(ours, ref) if ours.shape == ref.shape else float("inf")
            check(err <= TOL, f"{name}: logits relative error {err:.2e} > {TOL} (shape {ours.shape} vs {ref.shape})")
            must([moe, "logits", path, "--tokens", toks, "--out", step, "--stepwise"])
            serr = rel_err(np.array(json.load(open(step))["logits"]), ours)
            check(serr <= 1e-5, f"{name}: stepwise decode differs from the prefill by {serr:.2e}")
            must([moe, "logits", path, "--tokens", toks, "--out", nm, "--no-mmap"])
            merr = rel_err(np.array(json.load(open(nm))["logits"]), ours)
            check(merr <= 1e-5, f"{name}: --no-mmap differs from the mapped run by {merr:.2e}")
            if "mixtral" in name or "moe" in name:   # routed experts read from the file under a memory budget
                off = os.path.join(work, f"{name}.offload.json")
                must([moe, "logits", path, "--tokens", toks, "--out", off, "--mem-budget", "400K"])
                check(open(off).read() == open(out).read(), f"{name}: logits with experts on disk differ from resident ones")
            info = json.loads(must([moe, "info", path, "--json"]))
            n_params = sum(p.numel() for p in model.parameters())
            check(info["format"] == "gguf", f"{name}: info format {info['format']}")
            check(info["params"] == n_params, f"{name}: info params {info['params']} != transformers {n_params}")
            greedy = must([moe, "generate", path, "--tokens", toks, "-n", "1"]).strip()
            check(int(greedy) == int(np.argmax(ref[-1])), f"{name}: generate gave {greedy}, argmax is {int(np.argmax(ref[-1]))}")
            print(f"{name:28s} logits rel err {err:.1e}  stepwise {serr:.1e}  no-mmap {merr:.1e}  dtype {info['dtype']}", flush=True)
        except Exception as e:  # one broken case must not hide the others
            check(False, f"{name}: {e}")


# ---- 3. broken files -----------------------------------------------------------------------------

def test_bad_files(moe, work, rng):
    case = CASES[0]
    path, tokens, _, _ = gguf_case.build(case, work, seed=5)
    blob = open(path, "rb").read()
    bad = os.path.join(work, "bad.gguf")

    def expect_input_error(data, what):
        open(bad, "wb").write(data)
        p = run([moe, "info", bad], timeout=60)
        lines = p.stderr.strip().split("\n")
        ok = p.returncode == 2 and len(lines) == 1 and bad in lines[0]
        check(ok, f"{what}: rc {p.returncode}, stderr {p.stderr.strip()[:300]!r}")
    # truncations: header, metadata, tensor infos, data
    cuts = sorted(set([0, 3, 4, 8, 16, 23, 24, 30, 60, 200, len(blob) // 3, len(blob) // 2, len(blob) - 1]
                      + [int(x) for x in rng.integers(24, len(blob) - 1, size=12)]))
    for cut in cuts:
        expect_input_error(blob[:cut], f"truncated at {cut} of {len(blob)}")
    # header fields
    expect_input_error(b"GGUX" + blob[4:], "bad magic")
    expect_input_error(blob[:4] + struct.pack("<I", 1) + blob[8:], "version 1")
    expect_input_error(blob[:4] + struct.pack("<I", 7) + blob[8:], "version 7")
    expect_input_error(blob[:8] + struct.pack("<Q", 1 << 40) + blob[16:], "huge tensor count")
    expect_input_error(blob[:16] + struct.pack("<Q", 1 << 40) + blob[24:], "huge key count")
    expect_input_error(blob[:24] + struct.pack("<Q", 1 << 62) + blob[32:], "huge key length")
    # random byte flips in the header: must either load or fail cleanly (never crash)
    header_end = blob.find(b"token_embd")
    for i in range(40):
        b = bytearray(blob)
        for _ in range(3):
            b[int(rng.integers(4, max(header_end, 64)))] = int(rng.integers(0, 256))
        open(bad, "wb").write(bytes(b))
        p = run([moe, "logits", bad, "--tokens", "1,2,3"], timeout=60)
        check(p.returncode in (0, 2) and (p.returncode == 0 or len(p.stderr.strip().split("\n")) == 1),
              f"flipped header bytes #{i}: rc {p.returncode}, stderr {p.stderr.strip()[:300]!r}")
    print(f"broken files: {len(cuts) + 6} cases refused cleanly, 40 corruptions survived", flush=True)


# ---- 4. tokenizer beside the file ----------------------------------------------------------------

def test_tokenizer(moe, work):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    d = os.path.join(work, "tok")
    os.makedirs(d, exist_ok=True)
    if os.path.exists(os.path.join(d, "tokenizer.json")):
        os.remove(os.path.join(d, "tokenizer.json"))
    case = ("tok_model", "llama", dict(CASES[0][2], vocab_size=300), CASES[0][3], 8, {})
    path, _, _, _ = gguf_case.build(case, d)
    p = run([moe, "run", path, "-p", "hello", "-n", "2", "--temp", "0"])
    check(p.returncode == 2 and "tokenizer.json" in p.stderr and path in p.stderr,
          f"run without tokenizer.json: rc {p.returncode} {p.stderr.strip()!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["hello world, the quick brown fox " * 20], trainers.BpeTrainer(vocab_size=150, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(os.path.join(d, "tokenizer.json"))
    p = run([moe, "run", path, "-p", "hello world", "-n", "3", "--temp", "0"])
    check(p.returncode == 0, f"run with tokenizer.json beside the GGUF file: rc {p.returncode} {p.stderr.strip()!r}")
    print("tokenizer: refused without tokenizer.json, used the one beside the file", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    tools = os.environ.get("MOE_TEST_TOOLS") or os.path.join(os.path.dirname(os.path.abspath(args.moe)), "tests")
    seed = int(os.environ.get("MOE_TEST_SEED", np.random.SeedSequence().entropy % (1 << 31)))
    print(f"seed {seed} (MOE_TEST_SEED replays it)", flush=True)
    rng = np.random.default_rng(seed)
    if not args.only:
        test_converters(args.work, tools, rng)
    test_models(args.moe, args.work, args.only)
    if not args.only:
        test_bad_files(args.moe, args.work, rng)
        test_tokenizer(args.moe, args.work)
    if FAIL:
        print(f"\n{len(FAIL)} FAILURES")
        sys.exit(1)
    print("all GGUF checks passed")


if __name__ == "__main__":
    main()
