"""moe - Python bindings of libmoe, the engine for sparse Mixture-of-Experts transformers.

    import moe
    m = moe.Model("path/to/model")                 # a Hugging Face folder: config.json + safetensors
    ids = m.tokenizer.encode("The quick brown fox")
    logits = m.logits(ids)                         # numpy float32 [len(ids), vocab]
    text = m.generate("The quick brown fox", max_tokens=20, temperature=0)

    s = m.session()
    s.set_route_hook(lambda r: print(r.layer, r.experts))   # every MoE layer's routing decision
    s.eval(ids)

    a, b = m.session(), m.session()
    la, lb = moe.eval_batch([(a, ids), (b, ids[:3])])       # two sequences in one forward pass

ctypes over libmoe.so (see _capi.py for how it is found); arrays are numpy. Errors raise MoeError
with libmoe's one-line message. Sampling is libmoe's (the same seed gives the same tokens as
`moe run`)."""
import ctypes
import weakref

import numpy as np

from ._capi import (BatchSeq, LoadOptions, MoeError, ROUTE_HOOK, HIDDEN_HOOK, Sampling, Timing, api, c_float, c_int32,
                    c_size_t, c_void_p, libc)

__all__ = ["Model", "Session", "Tokenizer", "Sampler", "RoutingDecision", "MoeError", "eval_batch", "set_threads",
           "get_threads", "simd"]
__version__ = "0.1.0"


def set_threads(n):
    """Worker threads of every kernel (0: all CPUs)."""
    api["moe_set_threads"](int(n))


def get_threads():
    return api["moe_get_threads"]()


def simd():
    """The SIMD level in use: "avx512", "avx2" or "scalar"."""
    return api["moe_simd_name"]().decode()


def _ids(tokens):
    a = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64).reshape(-1))
    if a.size and (a.min() < -2**31 or a.max() >= 2**31):
        raise MoeError(1, "token ids must fit 32 bits")
    return np.ascontiguousarray(a.astype(np.int32))


def _fptr(a):
    return a.ctypes.data_as(ctypes.POINTER(c_float))


def _iptr(a):
    return a.ctypes.data_as(ctypes.POINTER(c_int32))


class Tokenizer:
    """A Hugging Face tokenizer.json (or a folder holding one, with tokenizer_config.json beside it)."""

    def __init__(self, path):
        h = c_void_p()
        api["moe_tokenizer_load"](str(path).encode(), ctypes.byref(h))
        self._h = h
        info = api["moe_tokenizer_get_info"](h).contents
        self.vocab_size, self.bos_id, self.eos_id = info.vocab_size, info.bos_id, info.eos_id
        self.add_bos = bool(info.add_bos)

    def encode(self, text, add_bos=False):
        """Token ids of text, as tokenizers' encode(text, add_special_tokens=False); add_bos prepends the
        BOS token when the tokenizer's own configuration adds one."""
        b = text.encode("utf-8")
        p, n = ctypes.POINTER(c_int32)(), c_size_t()
        api["moe_tokenizer_encode"](self._h, b, len(b), ctypes.byref(p), ctypes.byref(n))
        try:
            ids = [p[i] for i in range(n.value)]
        finally:
            libc.free(ctypes.cast(p, c_void_p))
        if add_bos and self.add_bos and self.bos_id >= 0:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special=True):
        a = _ids(ids)
        p, n = c_void_p(), c_size_t()
        api["moe_tokenizer_decode"](self._h, _iptr(a), a.size, int(bool(skip_special)), ctypes.byref(p), ctypes.byref(n))
        try:
            return ctypes.string_at(p, n.value).decode("utf-8", "replace")
        finally:
            libc.free(p)

    def piece(self, token_id):
        """The vocabulary string of a token, or None."""
        n = c_size_t()
        p = api["moe_tokenizer_piece"](self._h, int(token_id), ctypes.byref(n))
        return None if not p else ctypes.string_at(p, n.value).decode("utf-8", "replace")

    def token_id(self, piece):
        b = piece.encode("utf-8")
        i = api["moe_tokenizer_token_id"](self._h, b, len(b))
        return None if i < 0 else i

    def close(self):
        if getattr(self, "_h", None):
            api["moe_tokenizer_free"](self._h)
            self._h = None

    def __del__(self):
        self.close()


class RoutingDecision:
    """One MoE layer's decision for a batch of tokens (copied out of the callback's buffers):
    layer, positions [n], experts [n, top_k] (-1 pads routers with a variable count), weights [n, top_k],
    scores [n, n_experts] (the router's probabilities before top-k)."""

    def __init__(self, r):
        n, k, e = r.n_tokens, r.top_k, r.n_experts
        self.layer = r.layer
        self.positions = np.ctypeslib.as_array(r.pos, (n,)).copy()
        self.experts = np.ctypeslib.as_array(r.expert, (n, k)).copy()
        self.weights = np.ctypeslib.as_array(r.weight, (n, k)).copy()
        self.scores = np.ctypeslib.as_array(r.scores, (n, e)).copy()

    def __repr__(self):
        return f"RoutingDecision(layer={self.layer}, positions={self.positions.tolist()}, experts={self.experts.tolist()})"


class Session:
    """A KV cache over a model: eval() appends tokens and returns logits."""

    def __init__(self, model, ctx=0):
        h = c_void_p()
        api["moe_session_new"](model._live(), int(ctx), ctypes.byref(h))
        self._h, self.model = h, model
        model._sessions.add(self)
        self._route_cb = self._hidden_cb = None
        self._hook_error = None

    def _live(self):
        if not self._h:
            raise MoeError(1, "this session is closed")
        return self._h

    @property
    def pos(self):
        """Tokens already in the cache."""
        return api["moe_session_pos"](self._live())

    @property
    def max_ctx(self):
        return api["moe_session_max_ctx"](self._live())

    def reset(self):
        api["moe_session_reset"](self._live())

    def eval(self, tokens, all_positions=False):
        """Append tokens; the last position's logits [vocab], or every position's [n, vocab]."""
        ids = _ids(tokens)
        V = self.model.vocab_size
        out = np.empty((ids.size, V) if all_positions else (V,), dtype=np.float32)
        self._hook_error = None
        api["moe_session_eval"](self._live(), _iptr(ids), ids.size, _fptr(out), int(bool(all_positions)))
        self._raise_hook_error()
        return out

    def _raise_hook_error(self):
        if self._hook_error is not None:
            e, self._hook_error = self._hook_error, None
            raise e

    def set_route_hook(self, fn):
        """fn(RoutingDecision) for every MoE layer of every eval (None to stop). An exception raised by fn
        is re-raised by the eval that triggered it."""
        if fn is None:
            self._route_cb = None
            api["moe_session_set_route_hook"](self._live(), ROUTE_HOOK(), None)
            return

        def cb(user, r):
            try:
                fn(RoutingDecision(r.contents))
            except BaseException as e:  # noqa: B036 - C cannot carry it; eval re-raises it
                if self._hook_error is None:
                    self._hook_error = e
        self._route_cb = ROUTE_HOOK(cb)   # kept alive as long as the hook is set
        api["moe_session_set_route_hook"](self._live(), self._route_cb, None)

    def set_hidden_hook(self, fn):
        """fn(layer, point, positions, x) with x [n, d_model] (point 0: the FFN's input, 1: the layer's
        output) for every layer of every eval (None to stop)."""
        if fn is None:
            self._hidden_cb = None
            api["moe_session_set_hidden_hook"](self._live(), HIDDEN_HOOK(), None)
            return

        def cb(user, h):
            try:
                h = h.contents
                fn(h.layer, h.point, np.ctypeslib.as_array(h.pos, (h.n_tokens,)).copy(),
                   np.ctypeslib.as_array(h.x, (h.n_tokens, h.d_model)).copy())
            except BaseException as e:  # noqa: B036
                if self._hook_error is None:
                    self._hook_error = e
        self._hidden_cb = HIDDEN_HOOK(cb)
        api["moe_session_set_hidden_hook"](self._live(), self._hidden_cb, None)

    def timing(self):
        t = Timing()
        api["moe_session_get_timing"](self._live(), ctypes.byref(t))
        return {"attention_s": t.attention_s, "moe_s": t.moe_s, "dense_ffn_s": t.dense_ffn_s, "head_s": t.head_s,
                "tokens": t.tokens}

    def close(self):
        if getattr(self, "_h", None):
            api["moe_session_free"](self._h)
            self._h = None

    def __del__(self):
        self.close()


def eval_batch(items, all_positions=False):
    """Several sessions of one model in one forward pass: items is [(session, tokens), ...] with distinct
    sessions; returns each one's logits as Session.eval would (equal to evaluating it alone up to float32
    rounding). All or nothing: on failure no session moves."""
    items = list(items)
    if not items:
        raise MoeError(1, "an empty batch")
    seqs = (BatchSeq * len(items))()
    keep, outs = [], []
    for i, (s, tokens) in enumerate(items):
        ids = _ids(tokens)
        V = s.model.vocab_size
        out = np.empty((ids.size, V) if all_positions else (V,), dtype=np.float32)
        keep.append(ids)
        outs.append(out)
        seqs[i] = BatchSeq(s._live(), _iptr(ids), ids.size, _fptr(out), int(bool(all_positions)))
        s._hook_error = None
    api["moe_session_eval_batch"](seqs, len(items))
    for s, _ in items:
        s._raise_hook_error()
    return outs


class Sampler:
    """libmoe's sampler: greedy for temperature <= 0, else top-k -> top-p -> min-p, seeded."""

    def __init__(self, vocab_size, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=0):
        p = Sampling(float(temperature), int(top_k), float(top_p), float(min_p), int(seed))
        h = c_void_p()
        api["moe_token_sampler_new"](ctypes.byref(p), int(vocab_size), ctypes.byref(h))
        self._h, self.vocab_size = h, vocab_size

    def next(self, logits):
        a = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
        if a.size != self.vocab_size:
            raise MoeError(1, f"{a.size} logits for a vocabulary of {self.vocab_size}")
        return api["moe_token_sampler_next"](self._h, _fptr(a))

    def close(self):
        if getattr(self, "_h", None):
            api["moe_token_sampler_free"](self._h)
            self._h = None

    def __del__(self):
        self.close()


class Model:
    """A Hugging Face model folder. mem_budget (bytes) keeps routed experts on disk with a cache of that
    size (cache, prefetch, predictor, direct_io, io_threads as in docs/OFFLOAD.md); no_mmap reads the
    weights into memory."""

    def __init__(self, path, mem_budget=0, cache=None, prefetch=False, no_predict=False, direct_io=False, io_threads=0,
                 no_mmap=False, predictor=None, tokenizer=None):
        o = LoadOptions(int(mem_budget), cache.encode() if cache else None, int(bool(prefetch)), int(bool(no_predict)),
                        int(bool(direct_io)), int(io_threads), int(bool(no_mmap)),
                        predictor.encode() if predictor else None)
        h = c_void_p()
        api["moe_model_load_opts"](str(path).encode(), ctypes.byref(o), ctypes.byref(h))
        self._h, self.path = h, str(path)
        self._sessions = weakref.WeakSet()
        i = api["moe_model_get_info"](h).contents
        self.info = {f: getattr(i, f) for f, _ in i._fields_ if f not in ("eos_token_id", "model_type", "weight_dtype")}
        self.info["model_type"] = i.model_type.decode()
        self.info["weight_dtype"] = i.weight_dtype.decode()
        self.info["eos_token_id"] = [i.eos_token_id[k] for k in range(i.n_eos)]
        self.vocab_size = i.vocab_size
        self._tok_path = tokenizer
        self._tok = None

    def _live(self):
        if not self._h:
            raise MoeError(1, "this model is closed")
        return self._h

    @property
    def tokenizer(self):
        if self._tok is None:
            self._tok = Tokenizer(self._tok_path or self.path)
        return self._tok

    def session(self, ctx=0):
        return Session(self, ctx)

    def logits(self, tokens):
        """Every position's logits [n, vocab] of tokens in a fresh session."""
        ids = _ids(tokens)
        s = self.session(max(ids.size, 1))
        try:
            return s.eval(ids, all_positions=True)
        finally:
            s.close()

    def generate(self, prompt, max_tokens=256, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=0, stop=None,
                 ctx=0, return_ids=False):
        """Continue prompt (text, with BOS as the tokenizer adds it; or a list of token ids) like `moe run`:
        until an end-of-sequence token, a stop string (cut before it), max_tokens or the context.
        Returns the text, or (text, ids) with return_ids."""
        tok = self.tokenizer
        ids = tok.encode(prompt, add_bos=True) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise MoeError(1, "the prompt is empty")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        eos = set(self.info["eos_token_id"]) | ({tok.eos_id} if tok.eos_id >= 0 else set())
        s, smp = self.session(ctx), Sampler(self.vocab_size, temperature, top_k, top_p, min_p, seed)
        dt = c_void_p()
        api["moe_detokenizer_new"](tok._h, 1, ctypes.byref(dt))
        text, out = "", []
        try:
            logits = s.eval(ids)
            while len(out) < max_tokens:
                t = smp.next(logits)
                if t in eos:
                    break
                out.append(t)
                p, n = c_void_p(), c_size_t()
                api["moe_detokenizer_push"](dt, t, ctypes.byref(p), ctypes.byref(n))
                text += ctypes.string_at(p, n.value).decode("utf-8", "replace") if n.value else ""
                cut = min((text.find(x) for x in stops if x in text), default=-1)
                if cut >= 0:
                    text = text[:cut]
                    return (text, out) if return_ids else text
                if s.pos >= s.max_ctx or len(out) == max_tokens:
                    break
                logits = s.eval([t])
            p, n = c_void_p(), c_size_t()
            api["moe_detokenizer_flush"](dt, ctypes.byref(p), ctypes.byref(n))
            text += ctypes.string_at(p, n.value).decode("utf-8", "replace") if n.value else ""
            cut = min((text.find(x) for x in stops if x in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        finally:
            api["moe_detokenizer_free"](dt)
            smp.close()
            s.close()
        return (text, out) if return_ids else text

    def close(self):
        """Free the model; its sessions are closed first."""
        for s in list(getattr(self, "_sessions", ())):
            s.close()
        if getattr(self, "_tok", None) is not None:
            self._tok.close()
        if getattr(self, "_h", None):
            api["moe_model_free"](self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
