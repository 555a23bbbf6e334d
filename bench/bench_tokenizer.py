"""Tokenizer speed: `moe tokenize` against Hugging Face `tokenizers` on the same text, same machine,
same run. For each tokenizer.json it times loading alone (encoding one character) and loading plus
encoding the text, both for moe (a process; best of --repeat) and tokenizers (in-process: from_file,
then encode; best of --repeat), and prints the encode time net of loading and the ratio.
tokenizers is given one string, so it encodes on one thread like moe does.

Usage: python bench/bench_tokenizer.py --moe build/moe [--text FILE] [--repeat 3]
       (default text: tinyshakespeare.txt from $MOE_SHARED_DATA, 1.1 MB)"""
import argparse
import os
import subprocess
import time

from tokenizers import Tokenizer

SHARED = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")


def best(f, n):
    return min(f() for _ in range(n))


def timed_run(args):
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--text", default=os.path.join(SHARED, "tinyshakespeare.txt"))
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    text = open(a.text, encoding="utf-8").read()
    print("text: %s, %d bytes" % (a.text, len(text.encode())))
    print("%-12s %10s %10s %12s %12s %8s" % ("tokenizer", "moe load", "tk load", "moe encode", "tk encode", "tk/moe"))
    for name in ("qwen3", "deepseek_v3", "llama2", "gptoss"):
        path = os.path.join(SHARED, "tokenizers", name, "tokenizer.json")
        m_load = best(lambda: timed_run([a.moe, "tokenize", path, "--ids", "x"]), a.repeat)
        m_all = best(lambda: timed_run([a.moe, "tokenize", path, "--ids", "--file", a.text]), a.repeat)

        def tk_load():
            t0 = time.perf_counter()
            Tokenizer.from_file(path)
            return time.perf_counter() - t0
        tok = Tokenizer.from_file(path)

        def tk_enc():
            t0 = time.perf_counter()
            tok.encode(text, add_special_tokens=False)
            return time.perf_counter() - t0
        t_load, t_enc = best(tk_load, a.repeat), best(tk_enc, a.repeat)
        m_enc = max(m_all - m_load, 1e-9)
        print("%-12s %9.2fs %9.2fs %11.2fs %11.2fs %7.2fx" % (name, m_load, t_load, m_enc, t_enc, t_enc / m_enc))


if __name__ == "__main__":
    main()
