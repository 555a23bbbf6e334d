"""Load test of `moe serve` from a client on loopback, standard library only.

Every prompt is first sent alone (one request at a time, greedy): that is the reference. Then the same
requests are sent by 1, 4, 16 and 64 concurrent clients (each level bounded by --requests and
--max-seconds); every response is checked against the reference of its own prompt, so a lost, failed
or mixed-up response is counted, never hidden. Responses carry their tokens and the two most likely
alternatives (logprobs, as token ids): a response whose tokens differ from the reference first at a
token where the two most likely tokens tie to within 1e-3 in log-probability is counted apart as a
"near-tie flip" (a batched step sums in another order than a lone one, so float32 rounding may break
such a tie either way); any other difference is a mismatch. Requests use ignore_eos, so each makes
exactly --max-tokens tokens. Reported per level: throughput (generated tokens per second of wall time,
and its ratio to one client at a time), latency p50/p99 and time to first token p50/p99 (the first
non-empty text of the stream).

usage: serve_load.py --url http://127.0.0.1:PORT [--requests 16] [--max-tokens 32] [--levels 1,4,16,64]
                     [--prompts FILE] [--json OUT]
The module's functions are also used by tests/serve/test_serve.py."""
import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def tid(s):
    return int(s.split(":")[1])


def token_records(lp, chat):
    """[(id, logprob, {alternative id: logprob})] from a logprobs object (tokens as "token_id:N")."""
    if chat:
        return [(tid(t["token"]), t["logprob"], {tid(a["token"]): a["logprob"] for a in t["top_logprobs"]})
                for t in lp["content"]]
    return [(tid(t), l, {tid(k): v for k, v in top.items()})
            for t, l, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"])]


def post(url, path, body, timeout=600):
    """One request: (status, out, ttft, seconds). A streamed request's out is {text, finish_reason,
    usage, events, error, tokens}; otherwise the parsed JSON (or the text of a non-JSON body)."""
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.perf_counter()
    c.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    r = c.getresponse()
    ttft = None
    if not body.get("stream") or r.status != 200:
        data = r.read()
        c.close()
        try:
            return r.status, json.loads(data), None, time.perf_counter() - t0
        except ValueError:
            return r.status, data.decode("utf-8", "replace"), None, time.perf_counter() - t0
    text, finish, usage, events, error, toks = [], None, None, 0, None, []
    chat = path.endswith("chat/completions")
    while True:
        line = r.readline()
        if not line:
            break
        line = line.decode("utf-8").rstrip("\r\n")
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        ev = json.loads(data)
        events += 1
        if "error" in ev:
            error = ev["error"]
            continue
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices", []):
            piece = ch["delta"].get("content", "") if chat else ch.get("text", "")
            if piece:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                text.append(piece)
            if ch.get("logprobs"):
                toks += token_records(ch["logprobs"], chat)
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    c.close()
    out = {"text": "".join(text), "finish_reason": finish, "usage": usage, "events": events, "error": error,
           "tokens": toks}
    return r.status, out, ttft, time.perf_counter() - t0


def complete(url, prompt, max_tokens, stream=True, **kw):
    """A greedy completion with its tokens and their two most likely alternatives."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream, "ignore_eos": True,
            "logprobs": 2, "return_tokens_as_token_ids": True, **kw}
    if stream:
        body["stream_options"] = {"include_usage": True}
    st, out, ttft, secs = post(url, "/v1/completions", body)
    if st != 200:
        return {"status": st, "error": out, "seconds": secs}
    if not stream:
        ch = out["choices"][0]
        return {"status": 200, "text": ch["text"], "tokens": token_records(ch["logprobs"], False),
                "n_tokens": out["usage"]["completion_tokens"], "ttft": None, "seconds": secs,
                "finish": ch["finish_reason"]}
    if out["error"]:
        return {"status": out["error"].get("code", 500), "error": out["error"], "seconds": secs}
    return {"status": 200, "text": out["text"], "tokens": out["tokens"],
            "n_tokens": out["usage"]["completion_tokens"] if out["usage"] else None, "ttft": ttft, "seconds": secs,
            "finish": out["finish_reason"]}


def compare(ref, got):
    """'same', 'tie' (the first differing token is a near-tie in got's own log-probabilities), or what
    differs. ref and got: {text, tokens}."""
    rid, gid = [t[0] for t in ref["tokens"]], [t[0] for t in got["tokens"]]
    if len(rid) != len(gid):
        return f"{len(gid)} tokens, alone {len(rid)}"
    if rid == gid:
        return "same" if ref["text"] == got["text"] else f"same tokens, text {got['text']!r} vs {ref['text']!r}"
    j = next(i for i in range(len(rid)) if rid[i] != gid[i])
    _, lp, alts = got["tokens"][j]
    if rid[j] in alts and abs(alts[rid[j]] - lp) < 1e-3:
        return "tie"
    return f"token {j}: {gid[j]} (logprob {lp:.5f}), alone {rid[j]}; alternatives {alts}"


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def run_level(url, prompts, refs, clients, n_requests, max_tokens, max_seconds):
    """n_requests requests (prompt i % len) from `clients` threads; stops issuing after max_seconds."""
    lock = threading.Lock()
    nxt = [0]
    results = []
    t_start = time.perf_counter()

    def worker():
        while True:
            with lock:
                i = nxt[0]
                if i >= n_requests or time.perf_counter() - t_start > max_seconds:
                    return
                nxt[0] += 1
            k = i % len(prompts)
            try:
                r = complete(url, prompts[k], max_tokens)
            except Exception as e:  # a dropped connection is a lost response
                r = {"status": "exception", "error": repr(e), "seconds": None}
            r["prompt"] = k
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    ok = [r for r in results if r["status"] == 200]
    verdict = [compare(refs[r["prompt"]], r) for r in ok]
    wrong = [(r, v) for r, v in zip(ok, verdict) if v not in ("same", "tie")]
    tokens = sum(r["n_tokens"] or 0 for r in ok)
    return {"clients": clients, "requests": len(results), "ok": len(ok), "failed": len(results) - len(ok),
            "mismatched": len(wrong), "near_tie_flips": verdict.count("tie"), "tokens": tokens, "seconds": wall,
            "tok_per_s": tokens / wall if wall else 0,
            "latency_p50": pct([r["seconds"] for r in ok], 50), "latency_p99": pct([r["seconds"] for r in ok], 99),
            "ttft_p50": pct([r["ttft"] for r in ok], 50), "ttft_p99": pct([r["ttft"] for r in ok], 99),
            "failures": [{k: r[k] for k in ("status", "error") if k in r} for r in results if r["status"] != 200][:5],
            "mismatch_examples": [{"prompt": r["prompt"], "why": v} for r, v in wrong[:3]]}


def references(url, prompts, max_tokens):
    """Each prompt alone, one request at a time: the texts and the one-at-a-time baseline."""
    refs, res, t0 = [], [], time.perf_counter()
    for p in prompts:
        r = complete(url, p, max_tokens)
        if r["status"] != 200:
            raise SystemExit(f"reference request failed: {r}")
        refs.append(r)
        res.append(r)
    wall = time.perf_counter() - t0
    tokens = sum(r["n_tokens"] for r in res)
    return refs, {"clients": "alone", "requests": len(res), "tokens": tokens, "seconds": wall, "tok_per_s": tokens / wall,
                  "latency_p50": pct([r["seconds"] for r in res], 50), "latency_p99": pct([r["seconds"] for r in res], 99),
                  "ttft_p50": pct([r["ttft"] for r in res], 50), "ttft_p99": pct([r["ttft"] for r in res], 99)}


def default_prompts(path, n):
    """n distinct prompts: successive lines of a text file, or numbered sentences."""
    lines = []
    if path:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if len(ln.strip()) > 20]
    out = []
    for i in range(n):
        out.append(lines[(i * 37) % len(lines)] if lines else f"Request number {i}: tell me about item {i * 7 % 13}.")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--requests", type=int, default=16, help="requests per concurrency level (at least 2 per client)")
    ap.add_argument("--distinct", type=int, default=64, help="distinct prompts (each has its own reference)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--max-seconds", type=float, default=300, help="stop issuing requests of a level after this")
    ap.add_argument("--prompts", help="text file whose lines become prompts")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    prompts = default_prompts(a.prompts, a.distinct)
    load_before = os.getloadavg()
    refs, alone = references(a.url, prompts, a.max_tokens)
    print(f"alone: {alone['tokens']} tokens in {alone['seconds']:.2f} s = {alone['tok_per_s']:.1f} tok/s", flush=True)
    levels = []
    for c in [int(x) for x in a.levels.split(",")]:
        r = run_level(a.url, prompts, refs, c, max(a.requests, 2 * c), a.max_tokens, a.max_seconds)
        r["speedup"] = r["tok_per_s"] / alone["tok_per_s"]
        levels.append(r)
        print(f"{c:3d} clients: {r['ok']}/{r['requests']} ok, {r['mismatched']} mismatched, "
              f"{r['near_tie_flips']} near-tie flips, {r['tok_per_s']:.1f} tok/s "
              f"({r['speedup']:.2f}x), latency p50 {r['latency_p50']:.3f} s p99 {r['latency_p99']:.3f} s, "
              f"ttft p50 {r['ttft_p50']:.3f} s p99 {r['ttft_p99']:.3f} s", flush=True)
        for f in r["failures"] + r["mismatch_examples"]:
            print("   ", f, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"alone": alone, "levels": levels, "max_tokens": a.max_tokens, "distinct": a.distinct,
                       "loadavg_before": load_before, "loadavg_after": os.getloadavg()}, f, indent=1)
    bad = sum(r["failed"] + r["mismatched"] for r in levels)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
