"""Conformance of `moe tokenize` with Hugging Face `tokenizers`.

For each real tokenizer.json in $MOE_SHARED_DATA/tokenizers/ (qwen3, deepseek_v3, llama2, gptoss), and
for variants derived from them that exercise what those four files do not (Metaspace pre-tokenizer
and decoder, GPT-2 ByteLevel with its regex and prefix space, Digits, Whitespace, added tokens with
lstrip / rstrip / single_word / normalized), this test builds over 1 MB of mixed text
deterministically, then checks:
  - ids of every chunk (a few KB each, one moe run with --nul) equal
    Tokenizer.encode(chunk, add_special_tokens=False).ids; the first mismatches are shown with
    the text around them and both token sequences;
  - ids of the whole text in one piece are equal as well;
  - moe's decode of those ids equals tokenizers' decode, with and without skip_special_tokens,
    and the streaming decoder gives the same text.
Run: python test_tokenizer.py --moe build/moe --work /tmp/tok [--only NAME] [--quick]
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import time
import unicodedata

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<｜begin▁of▁sentence｜>",
            "<｜end▁of▁sentence｜>", "<｜tool▁sep｜>", "<|start|>", "<|end|>", "<|message|>", "<|channel|>",
            "<think>", "</think>", "<|fim_prefix|>", "<|im_start|>assistant\n", "<s>[INST]", "<|startoftext|>"]

MULTILINGUAL = [
    "日本語のテキストと漢字、ひらがな、カタカナ。東京は日本の首都です。",
    "中文文本：我爱自然语言处理，今天天气很好！北京欢迎你。",
    "한국어 텍스트: 안녕하세요, 세계! 대한민국 서울특별시.",
    "Ελληνικά: Καλημέρα κόσμε, ΑΒΓΔ αβγδ ΐΰ.",
    "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЖИК",
    "العربية: مرحبا بالعالم، هذا نص تجريبي ١٢٣٤٥٦٧٨٩٠.",
    "עברית: שלום עולם, זה טקסט לדוגמה. ",
    "हिन्दी: नमस्ते दुनिया, यह एक परीक्षण है। क्षत्रिय ज्ञान १२३",
    "ไทย: สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง",
    "Accents: café naïve résumé Ångström façade jalapeño Zürich Øresund ŁÓDŹ œuvre ß ẞ ı İ",
    "Decomposed: cafe\u0301 nai\u0308ve A\u030angstro\u0308m e\u0301e\u0300e\u0302 n\u0303 o\u0308\u0304 \u1100\u1161\u11a8",
    "Emoji: 😀😃😄 👍🏽👍🏿 👨‍👩‍👧‍👦 👩🏾‍💻 🏳️‍🌈 🇯🇵🇺🇸 ❤️ ✨ 🧑‍🤝‍🧑 😶‍🌫️ 🫠",
    "Math: ∀x∈ℝ, ∃y: x² + y² ≤ r²; ∑ᵢ aᵢ = ∞; √2 ≈ 1.414; ½ ¾ ⅞ Ⅻ ① ⑳",
    "Symbols: ©®™ § ¶ † ‡ • … ‰ ′ ″ ‹ › « » “quotes” ‘single’ — – ‐ € £ ¥ ₹ ₿",
    "Odd spaces:\u00a0nbsp\u2009thin\u3000ideographic\u200bzwsp\ufeffbom\u0085nel\u2028ls\u2029ps\u202fnnbsp.",
    "Controls: \x01\x02\x7f\x1b[31mred\x1b[0m bell\x07 tab\there\fform\vvt",
    "Ligatures and folds: ﬁ ﬂ ﬀ ſ K Å ǅ ǈ ǋ ＡＢＣ１２３ ｶﾀｶﾅ",
    "Contractions: I'm, you're, he's, she'd, we'll, they've, DON'T, IT'S, I'M, We'Ll, 'tis, rock'n'roll",
    "Private/rare: \ue000\uf8ff \U0001d400\U0001d7ff \U00020000\U0002a6d6 \U0001f9ea\U0001fae0",
]

CODE_SNIPPET = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

if __name__ == "__main__":
\tprint({k: fib(k) for k in range(10)})  # dict comprehension
\r\n    x = [i**2 for i in range(100) if i % 3 == 0]
'''


# Small cases that random text may miss; they open the chunk list.
EDGE = ["", " ", "  ", "\n", "\r\n\r\n", "\t\t x", "a", "<|im_start|>", "<s>", " <s> ", "<s><s></s>", "</s>x",
        "  <|im_start|>  user\n", "<|im_sta", "<|endoftext|><|endoftext|>", "<｜begin▁of▁sentence｜>Hello",
        "e<|im_start|>\u0301", "\u0301start with a mark", "\u0085\u0085 \u0085x", "x" + " " * 10000 + "y",
        "7" * 10000, "a" * 100000, "😀" * 5000, "\u3000" * 3000, "'s 'S 'll 'LL 's's", "A\u030a\u0301 \u212b \u1e9b\u0323",
        "\U0010fffd\U000e0001", "\x01", "word " * 2000, "<unk>", "▁▁▁ ▁x▁", "<0x41> <0x0A>",
        "x² aⅫ b½ c\u0301d e\u200dz f_g ٣h x\u00b2y"]


def assigned(cp):
    """cp as a string if Python's Unicode database (14.0 for Python 3.11) knows it, else "". The
    libraries involved (PCRE2 10.42: Unicode 14, utf8proc: 15, tokenizers' crates: newer) only agree
    on characters they all know."""
    ch = chr(cp)
    return ch if unicodedata.category(ch) not in ("Cn", "Cs") else ""


def build_chunks(target_bytes, seed):
    """Deterministic mixed text as a list of chunks of a few KB each."""
    rng = random.Random(seed)
    shakes = open(os.path.join(SHARED, "tinyshakespeare.txt"), encoding="utf-8").read()
    sources = []
    for path in sorted(glob.glob(os.path.join(REPO, "src", "**", "*.c"), recursive=True)):
        with open(path, encoding="utf-8", errors="replace") as f:
            sources.append(f.read())
    code = "\n".join(sources) if sources else CODE_SNIPPET * 200

    def fragment():
        r = rng.random()
        if r < 0.40:
            start = rng.randrange(0, len(shakes) - 3000)
            return shakes[start:start + rng.randrange(200, 3000)]
        if r < 0.55:
            start = rng.randrange(0, max(1, len(code) - 3000))
            return code[start:start + rng.randrange(200, 3000)]
        if r < 0.62:
            return CODE_SNIPPET
        if r < 0.80:
            return rng.choice(MULTILINGUAL)
        if r < 0.85:   # whitespace runs
            return "".join(rng.choice([" ", "  ", "\t", "\n", "\r\n", "\n\n", " " * rng.randrange(3, 40),
                                       "\t" * rng.randrange(2, 6), "\u00a0", "\u3000"]) for _ in range(rng.randrange(1, 8)))
        if r < 0.90:   # digit runs
            return " ".join("".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 30)))
                            for _ in range(rng.randrange(1, 6))) + rng.choice([".", ",", " ", "\n", "1,234,567.89", "3.14159"])
        if r < 0.96:   # special-token strings inside text
            return rng.choice(["", " ", "x", "\n"]) + rng.choice(SPECIALS) + rng.choice(["", " ", "hi", "\n", "  "])
        # long words and repeated characters: exercises BPE on long symbols
        return rng.choice(["a" * rng.randrange(50, 3000), "ab" * rng.randrange(50, 1500), "😀" * rng.randrange(5, 300),
                           "-" * rng.randrange(10, 500), "=" * 200 + "\n", "\u3042" * rng.randrange(10, 500),
                           "".join(assigned(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(10, 200)))])

    chunks, total = list(EDGE), sum(len(e.encode("utf-8")) for e in EDGE)
    while total < target_bytes:
        parts, size = [], 0
        want = rng.randrange(2000, 8000)
        while size < want:
            f = fragment()
            # no surrogates or NULs: tokenizers takes str, the --nul batch needs NUL-free chunks
            f = "".join(ch for ch in f if ch != "\0" and not 0xD800 <= ord(ch) <= 0xDFFF)
            parts.append(f)
            size += len(f.encode("utf-8"))
            if rng.random() < 0.5:
                parts.append(rng.choice(["\n", "\n\n", " ", "\r\n"]))
        chunk = "".join(parts)
        chunks.append(chunk)
        total += len(chunk.encode("utf-8"))
    return chunks


def run_moe(args, moe):
    r = subprocess.run([moe, "tokenize"] + args, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError("moe tokenize %s failed (%d): %s" % (" ".join(args[:3]), r.returncode,
                                                               r.stderr.decode(errors="replace")))
    return r.stdout


def show_mismatch(tok, text, ours, ref, label):
    i = 0
    while i < min(len(ours), len(ref)) and ours[i] == ref[i]:
        i += 1
    enc = tok.encode(text, add_special_tokens=False)
    off = enc.offsets[i][0] if i < len(enc.offsets) else len(text)
    lo, hi = max(0, i - 3), i + 6
    print("  %s: first difference at token %d (ours %d ids, tokenizers %d ids), text offset %d" % (
        label, i, len(ours), len(ref), off))
    print("    text around it: %r" % text[max(0, off - 40):off + 60])
    print("    tokenizers: %s" % [(t, tok.id_to_token(t)) for t in ref[lo:hi]])
    print("    ours:       %s" % [(t, tok.id_to_token(t)) for t in ours[lo:hi]])


def first_text_diff(a, b):
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return "at char %d: ours %r vs tokenizers %r" % (i, a[max(0, i - 30):i + 40], b[max(0, i - 30):i + 40])


def check(name, path, chunks, moe, work):
    tok = Tokenizer.from_file(path)
    failures = 0
    t0 = time.time()
    batch = os.path.join(work, name + ".chunks")
    with open(batch, "wb") as f:
        f.write(b"\0".join(c.encode("utf-8") for c in chunks))
    t1 = time.time()
    lines = run_moe([path, "--ids", "--nul", "--file", batch], moe).decode().split("\n")
    t_moe_chunks = time.time() - t1
    ours_chunks = [[int(x) for x in l.split(",")] if l else [] for l in lines[:len(chunks)]]
    if len(lines) != len(chunks) + 1:
        print("  %s: moe printed %d lines for %d chunks" % (name, len(lines) - 1, len(chunks)))
        return 1
    t1 = time.time()
    ref_chunks = [e.ids for e in tok.encode_batch(chunks, add_special_tokens=False)]
    t_ref_chunks = time.time() - t1
    bad = [i for i in range(len(chunks)) if ours_chunks[i] != ref_chunks[i]]
    for i in bad[:3]:
        show_mismatch(tok, chunks[i], ours_chunks[i], ref_chunks[i], "%s chunk %d/%d" % (name, i, len(chunks)))
    if bad:
        print("  %s: %d of %d chunks differ" % (name, len(bad), len(chunks)))
        failures += 1

    whole = "".join(chunks)
    wpath = os.path.join(work, name + ".txt")
    with open(wpath, "wb") as f:
        f.write(whole.encode("utf-8"))
    t1 = time.time()
    ours = [int(x) for x in run_moe([path, "--ids", "--file", wpath], moe).decode().strip().split(",") if x]
    t_moe_whole = time.time() - t1
    ref = tok.encode(whole, add_special_tokens=False).ids
    if ours != ref:
        show_mismatch(tok, whole, ours, ref, name + " whole text")
        failures += 1

    # Decoding: per chunk and whole, plain and streaming, with and without specials.
    idsfile = os.path.join(work, name + ".ids")
    with open(idsfile, "w") as f:
        for ids in ref_chunks + [ref]:
            f.write(",".join(map(str, ids)) + "\n")
    for skip in (False, True):
        for stream in (False, True):
            args = [path, "--decode", "@" + idsfile, "--nul"] + (["--skip-special"] if skip else []) + (["--stream"] if stream else [])
            texts = run_moe(args, moe).split(b"\0")[:-1]
            want = [tok.decode(ids, skip_special_tokens=skip) for ids in ref_chunks + [ref]]
            bad = [i for i in range(len(want)) if i >= len(texts) or texts[i].decode("utf-8", "replace") != want[i]]
            if bad:
                i = bad[0]
                got = texts[i].decode("utf-8", "replace") if i < len(texts) else "<missing>"
                print("  %s decode (skip_special=%s, stream=%s): %d texts differ, first #%d %s" % (
                    name, skip, stream, len(bad), i, first_text_diff(got, want[i])))
                failures += 1
    print("%-28s %s  %d chunks, %d bytes, %d tokens; moe %.2fs chunks + %.2fs whole (incl. load), tokenizers %.2fs; total %.1fs" % (
        name, "ok" if not failures else "FAILED", len(chunks), len(whole.encode()), len(ref), t_moe_chunks, t_moe_whole,
        t_ref_chunks, time.time() - t0))
    sys.stdout.flush()
    return failures


def variant(src, work, name, edit):
    with open(src, encoding="utf-8") as f:
        d = json.load(f)
    edit(d)
    path = os.path.join(work, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False)
    return path


def added(content, i, **kw):
    t = {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": False}
    t.update(kw)
    return t


def variants(work):
    base = os.path.join(SHARED, "tokenizers")
    out = []

    def mistral_first(d):   # newer SentencePiece layout: no normalizer, Metaspace pre-tokenizer and decoder
        d["normalizer"] = None
        d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        d["decoder"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        d["added_tokens"].append(added("[INST]", 0, special=True))
        d["added_tokens"].append(added("<tool>", 0, lstrip=True, rstrip=True, normalized=False))
    out.append(("llama2-metaspace-first", variant(os.path.join(base, "llama2/tokenizer.json"), work, "llama2-metaspace-first", mistral_first)))

    def metaspace_split(d):
        d["normalizer"] = {"type": "NFKC"}
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
            {"type": "Digits", "individual_digits": True}]}
        d["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
            {"type": "ByteFallback"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
        d["model"]["fuse_unk"] = False
        d["added_tokens"].append(added("▁the▁", 0, normalized=True))
        d["added_tokens"].append(added("Hello", 0, normalized=True, single_word=True))
    out.append(("llama2-metaspace-split", variant(os.path.join(base, "llama2/tokenizer.json"), work, "llama2-metaspace-split", metaspace_split)))

    def gpt2(d):   # OLMoE / GPT-2 style: ByteLevel does the regex split and adds a prefix space
        d["normalizer"] = {"type": "NFC"}
        d["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        d["added_tokens"].append(added("<|mask|>", 0, lstrip=True, special=True))
        d["added_tokens"].append(added("<|sep|>", 0, rstrip=True))
        d["added_tokens"].append(added("the", 0, single_word=True, normalized=True))
        d["added_tokens"].append(added(" and", 0, normalized=True, lstrip=True))
    out.append(("qwen3-gpt2-bytelevel", variant(os.path.join(base, "qwen3/tokenizer.json"), work, "qwen3-gpt2-bytelevel", gpt2)))

    def digits_ws(d):
        d["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"},
                                                              {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": False},
            {"type": "Split", "pattern": {"String": "e"}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Punctuation", "behavior": "Contiguous"},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    out.append(("gptoss-digits-split", variant(os.path.join(base, "gptoss/tokenizer.json"), work, "gptoss-digits-split", digits_ws)))

    def whitespace(d):
        d["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Split", "pattern": {"Regex": "[aeiou]"}, "behavior": "Removed", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[\\d\\h]+"}, "behavior": "MergedWithPrevious", "invert": True},
            {"type": "Whitespace"},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]}
    out.append(("deepseek-whitespace", variant(os.path.join(base, "deepseek_v3/tokenizer.json"), work, "deepseek-whitespace", whitespace)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", help="run only the tokenizers whose name contains this")
    ap.add_argument("--quick", action="store_true", help="200 KB of text instead of 1.1 MB")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    # Under the sanitizers (scripts/test.sh's second pass) the point is memory safety, not coverage:
    # the full 1.1 MB conformance already ran in the first pass, so take the quick set there.
    a.quick = a.quick or os.environ.get("MOE_TEST_SANITIZED") == "1"
    size = 200_000 if a.quick else 1_100_000
    chunks = build_chunks(size, seed=1234)
    small = build_chunks(250_000 if not a.quick else 60_000, seed=99)
    todo = [(n, os.path.join(SHARED, "tokenizers", n, "tokenizer.json"), chunks) for n in ("qwen3", "deepseek_v3", "llama2", "gptoss")]
    todo += [(n, p, small) for n, p in variants(a.work)]
    # StripAccents in tokenizers uses an old table of combining marks, we use utf8proc's current one:
    # leave out characters the two cannot agree on (marks the old table lacks, unassigned ones).
    from tokenizers.normalizers import StripAccents
    strip = StripAccents()
    def agreed(ch):
        return unicodedata.category(ch) != "Cn" and (strip.normalize_str(ch) == "") == unicodedata.category(ch).startswith("M")
    keep = {ch: agreed(ch) for ch in set("".join(small))}
    small_strip = ["".join(ch for ch in c if keep[ch]) for c in small]
    todo = [(n, p, small_strip if "digits" in n else t) for n, p, t in todo]
    failures = 0
    for name, path, text in todo:
        if a.only and a.only not in name:
            continue
        failures += check(name, path, text, a.moe, a.work)
    if failures:
        print("FAILED: %d checks" % failures)
        return 1
    print("all tokenizers agree with Hugging Face tokenizers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
