"""Fixtures shared by tests/serve and tests/python: a tiny random qwen3_moe saved by transformers' own
class (as tests/hf does), with the real Llama 2 tokenizer beside it; and a `moe serve` process on a
free port."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import torch
from transformers import AutoModelForCausalLM

from hf_cases import C, make_config, randomize


def tiny_model(work, name="tiny_qwen3_llama2tok", seed=7, **overrides):
    """A qwen3_moe with the 32000-token Llama 2 tokenizer (text prompts, chat formatting, EOS </s>)."""
    d = os.path.join(work, name)
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return d
    shared = os.environ.get("MOE_SHARED_DATA", "/work/shared/data")
    kw = dict(vocab_size=32000, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True,
              head_dim=16, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2)
    kw.update(overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config("qwen3_moe", C(**kw)), dtype=torch.float32).eval()
    randomize(model, seed)
    model.save_pretrained(d, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(shared, "tokenizers", "llama2", f), os.path.join(d, f))
    return d


class Server:
    """`moe serve MODEL --port 0 ...`; the port is read from its first line on stderr."""

    def __init__(self, moe, model, *args, env=None):
        self.log = open(os.path.join(os.path.dirname(model), f"serve_{os.getpid()}_{time.monotonic_ns()}.log"), "w+")
        self.p = subprocess.Popen([moe, "serve", model, "--port", "0", *args], stdout=subprocess.DEVNULL, stderr=self.log,
                                  env=env)
        deadline = time.time() + 60
        self.port = None
        while time.time() < deadline and self.port is None:
            if self.p.poll() is not None:
                raise RuntimeError(f"moe serve exited with {self.p.returncode}: {self.stderr()}")
            for line in self.stderr().splitlines():
                if "on http://" in line:
                    self.port = int(line.split("on http://")[1].split("/")[0].split(":")[1])
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"moe serve did not start: {self.stderr()}")
        self.url = f"http://127.0.0.1:{self.port}"

    def stderr(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        """{name or name{labels}: value} from /metrics."""
        st, text = self.get("/metrics")
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def post_json(url, path, body, raw=None, headers=None, timeout=120):
    """(status, parsed JSON) of a POST; raw bytes replace the JSON body when given."""
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode("utf-8", "replace")
