"""`moe serve` end to end on a tiny random qwen3_moe (transformers' class) with the Llama 2 tokenizer:

  - the endpoints answer in the OpenAI shapes; /metrics is Prometheus text; /health and /v1/models;
  - correctness under continuous batching: 24 requests (completions, chat, streamed and not) run alone
    one after the other, then all at once on 8 slots (16 wait in the queue and join as others leave);
    every concurrent response must carry the same tokens as its own request run alone - or differ
    first at a token where the two most likely tokens tie to within 1e-3 in log-probability, which
    float32 rounding may break either way (batched products sum in another order; the logits agree to
    ~1e-6, see tests/unit/test_batch.c) - so a lost or mixed-up response cannot pass;
  - greedy and seeded sampling equal `moe run` with the same flags; stop strings cut the text;
  - bad requests get 400 (404, 405, 413) with a one-line message naming the problem;
  - the same batching check with routed experts on disk under a memory budget (--mem-budget, --prefetch);
  - a full queue gives 429, a queue timeout 503; a client that disconnects (streamed or not) frees its
    slot within a step; SIGTERM ends the server with exit 0 and answers waiting requests."""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bench"))
from serve_fixture import Server, post_json, tiny_model  # noqa: E402
import serve_load  # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, flush=True)


def sse(url, path, body):
    """A streamed request: (status, text, token records, finish reason)."""
    st, out, _, _ = serve_load.post(url, path, body)
    if st != 200:
        return st, str(out), [], None
    return st, out["text"], out["tokens"], out["finish_reason"]


def request(url, spec):
    """Send one request spec greedily with logprobs: {text, tokens}, or {error}."""
    kind, stream, payload = spec
    path = "/v1/chat/completions" if kind == "chat" else "/v1/completions"
    body = dict(payload, temperature=0, ignore_eos=True, return_tokens_as_token_ids=True)
    body.update({"logprobs": True, "top_logprobs": 2} if kind == "chat" else {"logprobs": 2})
    if stream:
        st, text, toks, _ = sse(url, path, dict(body, stream=True))
        return {"text": text, "tokens": toks} if st == 200 else {"error": f"status {st}: {text}"}
    st, out = post_json(url, path, body)
    if st != 200:
        return {"error": f"status {st}: {out}"}
    ch = out["choices"][0]
    return {"text": ch["message"]["content"] if kind == "chat" else ch["text"],
            "tokens": serve_load.token_records(ch["logprobs"], kind == "chat")}


def test_endpoints(s, model_name):
    st, body = s.get("/health")
    check(st == 200 and json.loads(body)["status"] == "ok", f"/health: {st} {body}")
    st, body = s.get("/v1/models")
    check(st == 200 and json.loads(body)["data"][0]["id"] == model_name, f"/v1/models: {st} {body}")
    st, body = s.get("/metrics")
    ok = st == 200
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            ok &= name.startswith("moe_") and float(value) >= 0
    check(ok and "moe_slots 8" in body, f"/metrics is not Prometheus text: {st} {body[:300]}")
    st, body = s.get("/v1/nothing")
    check(st == 404 and "no such endpoint" in body, f"unknown path: {st} {body}")
    st, body = s.get("/v1/completions")
    check(st == 405, f"GET /v1/completions: {st} {body}")
    st, out = post_json(s.url, "/v1/completions", {"prompt": "Hello", "max_tokens": 4, "temperature": 0})
    ok = st == 200 and out["object"] == "text_completion" and out["choices"][0]["finish_reason"] in ("stop", "length")
    check(ok and out["usage"]["prompt_tokens"] == 2 and out["usage"]["total_tokens"] == 2 + out["usage"]["completion_tokens"],
          f"completion shape: {st} {out}")
    st, out = post_json(s.url, "/v1/chat/completions", {"messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": [{"type": "text", "text": "Again"}]}], "max_tokens": 3})
    check(st == 200 and out["object"] == "chat.completion" and out["choices"][0]["message"]["role"] == "assistant",
          f"chat shape: {st} {out}")


def test_bad_requests(s):
    cases = [
        (b'{"prompt": "x"', 400, "malformed JSON"),
        (b'{"prompt": "x", "prompt": "y"}', 400, "duplicate"),
        (b'[1, 2]', 400, "JSON object"),
        (b'{"prompt": "x", "foo": 1}', 400, 'unknown field "foo"'),
        (b'{"prompt": "x", "temperature": "hot"}', 400, "temperature"),
        (b'{"prompt": "x", "temperature": -1}', 400, "temperature"),
        (b'{"prompt": "x", "max_tokens": 0}', 400, "max_tokens"),
        (b'{"prompt": "x", "max_tokens": 100000}', 400, "max_tokens"),
        (b'{"prompt": "x", "n": 2}', 400, '"n"'),
        (b'{"prompt": "x", "presence_penalty": 0.5}', 400, "presence_penalty"),
        (b'{"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i"]}', 400, "stop"),
        (b'{"prompt": "x", "stop": ""}', 400, "stop"),
        (b'{"prompt": [1, 2, 99999]}', 400, "token id"),
        (b'{"max_tokens": 3}', 400, "prompt"),
        (b'{"prompt": "\xff\xfe"}', 400, "UTF-8"),
        (b'{"prompt": "x", "stream_options": {"include_usage": true}}', 400, "stream"),
        (b'{"prompt": "x", "model": "gpt-4"}', 404, "gpt-4"),
        (b'{"prompt": "x", "logprobs": 21}', 400, "logprobs"),
    ]
    for raw, want, words in cases:
        st, out = post_json(s.url, "/v1/completions", None, raw=raw)
        msg = out["error"]["message"] if isinstance(out, dict) and "error" in out else str(out)
        check(st == want and words in msg and "\n" not in msg,
              f"{raw!r}: got {st} {msg!r}, want {want} mentioning {words!r}")
    chats = [
        ({"messages": []}, "non-empty"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "alternate"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]}, "system"),
        ({"messages": [{"role": "user", "content": 5}]}, "content"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "robot"),
        ({"messages": [{"role": "user", "content": "x", "extra": 1}]}, "extra"),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "logprobs"),
    ]
    for body, words in chats:
        st, out = post_json(s.url, "/v1/chat/completions", body)
        msg = out["error"]["message"] if isinstance(out, dict) and "error" in out else str(out)
        check(st == 400 and words in msg, f"chat {body}: got {st} {msg!r}, want 400 mentioning {words!r}")
    st, out = post_json(s.url, "/v1/completions", None, raw=b'{"prompt": "' + b"x" * 70000 + b'"}')
    check(st == 413, f"a body over --max-body: {st} {out}")
    # the server is still fine
    st, _ = post_json(s.url, "/v1/completions", {"prompt": "ok", "max_tokens": 2})
    check(st == 200, f"after bad requests: {st}")


def test_batching(s):
    prompts = serve_load.default_prompts(os.path.join(os.environ.get("MOE_SHARED_DATA", "/work/shared/data"),
                                                      "tinyshakespeare.txt"), 24)
    specs = []
    for i, p in enumerate(prompts):
        n = 6 + i % 7
        if i % 4 == 3:
            specs.append(("chat", i % 8 == 7, {"messages": [{"role": "user", "content": p}], "max_tokens": n}))
        else:
            specs.append(("completion", i % 3 == 1, {"prompt": p, "max_tokens": n}))
    refs = [request(s.url, sp) for sp in specs]
    for sp, r in zip(specs, refs):
        check("error" not in r, f"alone {sp}: {r.get('error')}")
    if any("error" in r for r in refs):
        return
    before = s.metrics()
    got = [None] * len(specs)

    def go(i):
        got[i] = request(s.url, specs[i])
    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = s.metrics()
    verdicts = [g["error"] if "error" in g else serve_load.compare(r, g) for r, g in zip(refs, got)]
    ties = verdicts.count("tie")
    for i, v in enumerate(verdicts):
        check(v in ("same", "tie"), f"request {i} ({specs[i][0]}, stream {specs[i][1]}) concurrent: {v}")
    steps = after["moe_steps_total"] - before["moe_steps_total"]
    seqs = after["moe_step_sequences_total"] - before["moe_step_sequences_total"]
    print(f"24 concurrent requests: {verdicts.count('same')} identical, {ties} near-tie flips; "
          f"{steps:.0f} steps, {seqs / max(steps, 1):.1f} sequences per step", flush=True)
    check(seqs / max(steps, 1) > 3, f"the requests were not batched: {seqs} sequences in {steps} steps")
    # the check itself tells requests apart: a response given to the wrong request fails it
    swapped = [serve_load.compare(refs[i], got[(i + 1) % len(got)]) for i in range(len(got)) if "error" not in got[i]]
    check(all(v not in ("same", "tie") for v in swapped), f"swapped responses pass the check: {swapped}")


def test_sampling_and_stops(moe, model, s):
    prompt = "The quick brown fox"
    for flags, body in ((["--temp", "0"], {"temperature": 0}),
                        (["--temp", "0.9", "--seed", "5"], {"temperature": 0.9, "seed": 5}),
                        (["--temp", "1.2", "--top-k", "5", "--top-p", "0.9", "--min-p", "0.01", "--seed", "11"],
                         {"temperature": 1.2, "top_k": 5, "top_p": 0.9, "min_p": 0.01, "seed": 11})):
        r = subprocess.run([moe, "run", model, "-p", prompt, "-n", "12"] + flags, capture_output=True, text=True)
        st, out = post_json(s.url, "/v1/completions", dict(body, prompt=prompt, max_tokens=12))
        check(st == 200 and r.returncode == 0 and out["choices"][0]["text"] == r.stdout[:-1],
              f"{flags}: server {out} vs moe run {r.stdout!r}")
    st, out = post_json(s.url, "/v1/completions", {"prompt": prompt, "max_tokens": 20, "temperature": 0, "ignore_eos": True})
    text = out["choices"][0]["text"]
    if len(text) > 8:
        stop = text[4:7]
        want = text[:text.index(stop)]
        st, out = post_json(s.url, "/v1/completions", {"prompt": prompt, "max_tokens": 20, "temperature": 0,
                                                       "ignore_eos": True, "stop": ["zzzz", stop]})
        ch = out["choices"][0]
        check(ch["text"] == want and ch["finish_reason"] == "stop", f"stop {stop!r}: {ch}, want {want!r}")
        st, got, _, finish = sse(s.url, "/v1/completions", {"prompt": prompt, "max_tokens": 20, "temperature": 0,
                                                             "ignore_eos": True, "stop": stop, "stream": True})
        check(got == want and finish == "stop", f"streamed stop {stop!r}: {got!r} {finish}, want {want!r}")


def wait_metric(s, key, want, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if s.metrics().get(key) == want:
            return time.time() - t0
        time.sleep(0.02)
    return None


def raw_request(port, body):
    sock = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_limits(moe, model):
    s = Server(moe, model, "--max-batch", "1", "--queue", "1", "--queue-timeout", "0.7", "--ctx", "4096", "-t", "2")
    try:
        long = {"prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0, "ignore_eos": True}
        # a non-streamed request whose client goes away: the slot is free within a step
        sock = raw_request(s.port, long)
        check(wait_metric(s, "moe_requests_running", 1, 20) is not None, "the long request never started")
        sock.close()
        dt = wait_metric(s, "moe_requests_running", 0, 10)
        check(dt is not None and dt < 2, f"a disconnected client's slot was freed after {dt} s")
        check(s.metrics().get("moe_client_disconnects_total") == 1, f"disconnects: {s.metrics()}")
        # one running, one queued, the third is refused; the queued one times out with 503
        sock = raw_request(s.port, dict(long, stream=True))
        check(wait_metric(s, "moe_requests_running", 1, 20) is not None, "the streamed request never started")
        queued = {}
        t = threading.Thread(target=lambda: queued.update(r=post_json(s.url, "/v1/completions", {"prompt": "x", "max_tokens": 2})))
        t.start()
        check(wait_metric(s, "moe_requests_queued", 1, 20) is not None, "the second request was not queued")
        st, out = post_json(s.url, "/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(st == 429 and "retry" in out["error"]["message"], f"over capacity: {st} {out}")
        t.join()
        st, out = queued["r"]
        check(st == 503 and "no free slot" in out["error"]["message"], f"queue timeout: {st} {out}")
        # the streamed client reads a little, then goes away
        sock.recv(4096)
        sock.close()
        dt = wait_metric(s, "moe_requests_running", 0, 10)
        check(dt is not None and dt < 2, f"a disconnected stream's slot was freed after {dt} s")
        st, out = post_json(s.url, "/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(st == 200, f"after the disconnects: {st} {out}")
        m = s.metrics()
        check(m.get('moe_http_requests_total{endpoint="completions",code="429"}') == 1 and
              m.get('moe_requests_finished_total{reason="queue_timeout"}') == 1, f"metrics: {m}")
        # SIGTERM with a request running: it is answered and the server exits 0
        res = {}
        t = threading.Thread(target=lambda: res.update(r=post_json(s.url, "/v1/completions", long)))
        t.start()
        wait_metric(s, "moe_requests_running", 1, 20)
        rc = s.stop()
        t.join(30)
        check(rc == 0, f"SIGTERM: exit {rc}: {s.stderr()[-500:]}")
        check(res.get("r", (0,))[0] == 503, f"the running request at shutdown got {res.get('r')}")
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = tiny_model(a.work)
    s = Server(a.moe, model, "--max-batch", "8", "--queue", "32", "--ctx", "512", "--max-body", "64K", "-t", "2")
    try:
        test_endpoints(s, os.path.basename(model))
        test_bad_requests(s)
        test_batching(s)
        test_sampling_and_stops(a.moe, model, s)
        m = s.metrics()
        check(m.get("moe_requests_running") == 0 and m.get("moe_requests_queued") == 0, f"requests left behind: {m}")
    finally:
        rc = s.stop()
        check(rc == 0, f"moe serve exited with {rc}: {s.stderr()[-2000:]}")
    # experts on disk under a budget (the offload options work in serve): the same batching check
    s = Server(a.moe, model, "--max-batch", "8", "--queue", "32", "--ctx", "512", "-t", "2", "--mem-budget", "40K",
               "--cache", "lru", "--prefetch", "--stats")
    try:
        test_batching(s)
    finally:
        rc = s.stop()
        check(rc == 0 and "stats serve" in s.stderr() and "cache hit rate" in s.stderr(),
              f"offloaded server: exit {rc}, stderr {s.stderr()[-1500:]}")
    test_limits(a.moe, model)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("moe serve ok")


if __name__ == "__main__":
    main()
