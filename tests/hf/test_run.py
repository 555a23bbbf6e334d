"""`moe run`: every sampling flag, stopping rules, chat formatting, Ctrl-C and interactive chat, on
small random models that carry the real Qwen3 and Llama 2 tokenizers. The text moe streams is
checked against Hugging Face `tokenizers` decoding the ids that `moe generate` (greedy) produces."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, flush=True)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def stats(stderr):
    m = re.search(r"prompt (\d+) tokens .* generated (\d+) tokens .* seed (\d+)", stderr)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def make_model(work, name, tok_dir, seed):
    d = os.path.join(work, name)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_random_model.py"), "tiny", d,
                        "--tokenizer", tok_dir, "--seed", str(seed), "--dtype", "f32"], check=True, capture_output=True)
    return d


def test_model(moe, d, tok_file, chat_prefix):
    tok = Tokenizer.from_file(tok_file)
    prompt = "The quick brown fox"
    ids = tok.encode(prompt, add_special_tokens=False).ids
    # greedy: the streamed text is the decode of the greedy ids
    g = run([moe, "generate", d, "--tokens", ",".join(map(str, ids)), "-n", "12"])
    check(g.returncode == 0, f"generate failed: {g.stderr}")
    greedy_ids = [int(x) for x in g.stdout.strip().split(",")]
    want = tok.decode(greedy_ids, skip_special_tokens=True)
    r = run([moe, "run", d, "-p", prompt, "-n", "12", "--temp", "0", "--no-bos"])
    check(r.returncode == 0, f"run --temp 0 failed: {r.stderr}")
    check(r.stdout == want + "\n", f"greedy text {r.stdout!r} != tokenizers decode {want!r}")
    st = stats(r.stderr)
    check(st is not None and st[0] == len(ids) and st[1] == 12, f"speed line wrong: {r.stderr!r}")
    # flags that reduce to greedy: top-k 1, tiny top-p, min-p 1
    for flags in (["--top-k", "1"], ["--top-p", "1e-9"], ["--min-p", "1"]):
        r2 = run([moe, "run", d, "-p", prompt, "-n", "12", "--temp", "1.5", "--seed", "5", "--no-bos"] + flags)
        check(r2.stdout == r.stdout, f"{flags} should equal greedy: {r2.stdout!r} vs {r.stdout!r}")
    # seeds: reproducible, and different seeds differ
    a = run([moe, "run", d, "-p", prompt, "-n", "24", "--temp", "1.0", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "7"])
    b = run([moe, "run", d, "-p", prompt, "-n", "24", "--temp", "1.0", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "7"])
    c = run([moe, "run", d, "-p", prompt, "-n", "24", "--temp", "1.0", "--top-k", "0", "--top-p", "1", "--min-p", "0", "--seed", "8"])
    check(a.stdout == b.stdout, "same seed gave different text")
    check(a.stdout != c.stdout, "different seeds gave the same 24 tokens")
    check(a.stdout != r.stdout, "temperature 1 sampling gave the greedy text")
    # default seed is printed and reproduces the run
    dflt = run([moe, "run", d, "-p", prompt, "-n", "16"])
    seed = stats(dflt.stderr)[2]
    again = run([moe, "run", d, "-p", prompt, "-n", "16", "--seed", str(seed)])
    check(dflt.stdout == again.stdout, f"printed seed {seed} does not reproduce the run")
    # -n bounds the output
    for n in (0, 1, 5):
        rn = run([moe, "run", d, "-p", prompt, "-n", str(n), "--temp", "0"])
        check(stats(rn.stderr) and stats(rn.stderr)[1] == n, f"-n {n}: {rn.stderr!r}")
    # --stop: output is cut before the stop string
    text = r.stdout.rstrip("\n")
    if len(text) > 6:
        stop = text[3:6]
        rs = run([moe, "run", d, "-p", prompt, "-n", "12", "--temp", "0", "--no-bos", "--stop", stop])
        check(rs.stdout == text[:text.index(stop)] + "\n", f"--stop {stop!r}: {rs.stdout!r}, full {text!r}")
        rs2 = run([moe, "run", d, "-p", prompt, "-n", "12", "--temp", "0", "--no-bos", "--stop", "zzzz|" + stop])
        check(rs2.stdout == rs.stdout, "--stop with alternatives")
    # EOS: make the first greedy token an end-of-sequence token; nothing is generated
    cfg_path = os.path.join(d, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["eos_token_id"] = [greedy_ids[0]]
    json.dump(cfg, open(cfg_path, "w"))
    re_ = run([moe, "run", d, "-p", prompt, "-n", "12", "--temp", "0", "--no-bos"])
    check(re_.stdout == "\n" and stats(re_.stderr)[1] == 0, f"EOS did not stop generation: {re_.stdout!r}")
    del cfg["eos_token_id"]
    json.dump(cfg, open(cfg_path, "w"))
    # --chat formats the prompt with the family's format
    rc = run([moe, "run", d, "-p", "Hi", "--chat", "-n", "3", "--temp", "0", "--system", "Be brief."])
    check(rc.returncode == 0, f"--chat failed: {rc.stderr}")
    if chat_prefix is not None:
        want_prompt = len(tok.encode(chat_prefix, add_special_tokens=False).ids)
        check(stats(rc.stderr)[0] == want_prompt, f"chat prompt has {stats(rc.stderr)[0]} tokens, want {want_prompt}")
    # interactive chat on stdin: two turns, both answered, exit 0
    ri = run([moe, "run", d, "--chat", "-n", "4", "--temp", "0"], input="Hello\nAnd again\n")
    check(ri.returncode == 0 and ri.stdout.count("\n") >= 2, f"interactive chat: rc {ri.returncode} {ri.stdout!r} {ri.stderr!r}")
    # Ctrl-C stops cleanly and prints the speed
    # (the signal goes once the first generated text arrives: a fixed sleep is too short on a loaded machine)
    p = subprocess.Popen([moe, "run", d, "-p", prompt, "-n", "1000000", "--ctx", "100000"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first = os.read(p.stdout.fileno(), 1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    out, err = (first + out).decode("utf-8", "replace"), err.decode("utf-8", "replace")
    check(p.returncode == 0 and "interrupted" in err and stats(err) is not None and stats(err)[1] > 0,
          f"Ctrl-C: rc {p.returncode}, stderr {err!r}")
    # an empty prompt starts from BOS (the logits of nothing do not exist); without BOS it is refused
    bos = json.load(open(os.path.join(d, "config.json"))).get("bos_token_id")
    tb = json.load(open(os.path.join(d, "tokenizer_config.json"))).get("bos_token")
    tb = tb.get("content") if isinstance(tb, dict) else tb
    tk_bos = tok.token_to_id(tb) if tb else bos
    empty = os.path.join(os.path.dirname(d), "empty.txt")
    open(empty, "w").close()
    for src in (["-p", ""], ["-f", empty]):
        re0 = run([moe, "run", d] + src + ["-n", "6", "--temp", "0"])
        if tk_bos is not None:
            g0 = run([moe, "generate", d, "--tokens", str(tk_bos), "-n", "6"])
            want0 = tok.decode([int(x) for x in g0.stdout.strip().split(",")], skip_special_tokens=True)
            check(re0.returncode == 0 and re0.stdout == want0 + "\n" and stats(re0.stderr)[0] == 1,
                  f"empty prompt {src}: rc {re0.returncode} {re0.stdout!r}, want the greedy text after BOS {want0!r}")
        else:
            check(re0.returncode in (1, 2) and "empty" in re0.stderr and len(re0.stderr.strip().splitlines()) == 1,
                  f"empty prompt {src} without BOS (config bos {bos}): rc {re0.returncode} {re0.stderr!r}")
        rn0 = run([moe, "run", d] + src + ["-n", "6", "--no-bos"])
        check(rn0.returncode == 1 and "empty" in rn0.stderr and len(rn0.stderr.strip().splitlines()) == 1,
              f"empty prompt {src} with --no-bos: rc {rn0.returncode} {rn0.stderr!r}")
    # bad flags are usage errors
    for bad in (["--temp", "-1"], ["--top-p", "2"], ["-n", "x"], []):
        rb = run([moe, "run", d] + bad + ([] if not bad else ["-p", "x"]))
        check(rb.returncode == 1 and len(rb.stderr.strip().splitlines()) == 1, f"bad flags {bad}: rc {rb.returncode} {rb.stderr!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    shared = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")
    qwen = os.path.join(shared, "tokenizers", "qwen3")
    llama = os.path.join(shared, "tokenizers", "llama2")
    test_model(a.moe, make_model(a.work, "qwen3tok", qwen, 1), os.path.join(qwen, "tokenizer.json"),
               "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    test_model(a.moe, make_model(a.work, "llama2tok", llama, 2), os.path.join(llama, "tokenizer.json"), None)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("moe run ok")


if __name__ == "__main__":
    main()
