"""ctypes declarations of include/moe.h and the loading of libmoe.

The library is looked for, in order: the file named by the MOE_LIBRARY environment variable; the
libmoe.so bundled in this package by `pip install .`; the system's (ldconfig, e.g. after
`cmake --install`). Every function that returns a moe_status is checked: a non-zero status raises
MoeError with moe_last_error()'s one-line message."""
import ctypes
import ctypes.util
import glob
import os

c_int, c_int32, c_int64, c_uint64, c_double, c_float, c_char_p, c_void_p, c_size_t = (
    ctypes.c_int, ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_double, ctypes.c_float,
    ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
P = ctypes.POINTER


class MoeError(RuntimeError):
    """A libmoe failure: .status is the moe_status (1 usage, 2 input, 3 memory, 4 I/O, 5 internal)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ModelInfo(ctypes.Structure):
    _fields_ = [("model_type", c_char_p), ("weight_dtype", c_char_p), ("n_layers", c_int), ("n_moe_layers", c_int),
                ("hidden_size", c_int), ("vocab_size", c_int), ("n_heads", c_int), ("n_kv_heads", c_int),
                ("n_experts", c_int), ("top_k", c_int), ("n_shared_experts", c_int), ("max_position", c_int),
                ("n_params", c_uint64), ("n_active_params", c_uint64), ("bytes_per_token", c_uint64),
                ("bos_token_id", c_int), ("n_eos", c_int), ("eos_token_id", c_int * 8)]


class LoadOptions(ctypes.Structure):
    _fields_ = [("expert_budget", c_int64), ("cache", c_char_p), ("prefetch", c_int), ("no_predict", c_int),
                ("direct_io", c_int), ("io_threads", c_int), ("no_mmap", c_int), ("predictor", c_char_p)]


class Routing(ctypes.Structure):
    _fields_ = [("layer", c_int), ("n_tokens", c_int), ("n_experts", c_int), ("top_k", c_int), ("pos", P(c_int)),
                ("expert", P(c_int)), ("weight", P(c_float)), ("scores", P(c_float))]


class Hidden(ctypes.Structure):
    _fields_ = [("layer", c_int), ("point", c_int), ("n_tokens", c_int), ("d_model", c_int), ("pos", P(c_int)),
                ("x", P(c_float))]


class Timing(ctypes.Structure):
    _fields_ = [("attention_s", c_double), ("moe_s", c_double), ("dense_ffn_s", c_double), ("head_s", c_double),
                ("tokens", ctypes.c_long)]


class BatchSeq(ctypes.Structure):
    _fields_ = [("session", c_void_p), ("tokens", P(c_int32)), ("n_tokens", c_int), ("logits", P(c_float)),
                ("all_positions", c_int)]


class Sampling(ctypes.Structure):
    _fields_ = [("temperature", c_double), ("top_k", c_int), ("top_p", c_double), ("min_p", c_double),
                ("seed", c_uint64)]


class TokenizerInfo(ctypes.Structure):
    _fields_ = [("vocab_size", c_int), ("bos_id", c_int32), ("eos_id", c_int32), ("add_bos", c_int), ("add_eos", c_int)]


ROUTE_HOOK = ctypes.CFUNCTYPE(None, c_void_p, P(Routing))
HIDDEN_HOOK = ctypes.CFUNCTYPE(None, c_void_p, P(Hidden))


def _find():
    env = os.environ.get("MOE_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    bundled = sorted(glob.glob(os.path.join(here, "libmoe.so*")))
    if bundled:
        return bundled[0]
    found = ctypes.util.find_library("moe")
    if found:
        return found
    raise OSError("libmoe not found: set MOE_LIBRARY to build/libmoe.so, or install the package with `pip install .`")


lib = ctypes.CDLL(_find())

# (name, restype, argtypes); restype None for void. Status-returning functions get a checker.
_SIGS = [
    ("moe_last_error", c_char_p, []),
    ("moe_set_threads", None, [c_int]),
    ("moe_get_threads", c_int, []),
    ("moe_simd_name", c_char_p, []),
    ("moe_model_load_opts", c_int, [c_char_p, P(LoadOptions), P(c_void_p)]),
    ("moe_model_free", None, [c_void_p]),
    ("moe_model_get_info", P(ModelInfo), [c_void_p]),
    ("moe_session_new", c_int, [c_void_p, c_int, P(c_void_p)]),
    ("moe_session_free", None, [c_void_p]),
    ("moe_session_reset", None, [c_void_p]),
    ("moe_session_pos", c_int, [c_void_p]),
    ("moe_session_max_ctx", c_int, [c_void_p]),
    ("moe_session_set_route_hook", None, [c_void_p, ROUTE_HOOK, c_void_p]),
    ("moe_session_set_hidden_hook", None, [c_void_p, HIDDEN_HOOK, c_void_p]),
    ("moe_session_get_timing", None, [c_void_p, P(Timing)]),
    ("moe_session_eval", c_int, [c_void_p, P(c_int32), c_int, P(c_float), c_int]),
    ("moe_session_eval_batch", c_int, [P(BatchSeq), c_int]),
    ("moe_token_sampler_new", c_int, [P(Sampling), c_int, P(c_void_p)]),
    ("moe_token_sampler_next", c_int32, [c_void_p, P(c_float)]),
    ("moe_token_sampler_free", None, [c_void_p]),
    ("moe_tokenizer_load", c_int, [c_char_p, P(c_void_p)]),
    ("moe_tokenizer_free", None, [c_void_p]),
    ("moe_tokenizer_get_info", P(TokenizerInfo), [c_void_p]),
    ("moe_tokenizer_encode", c_int, [c_void_p, c_char_p, c_size_t, P(P(c_int32)), P(c_size_t)]),
    ("moe_tokenizer_decode", c_int, [c_void_p, P(c_int32), c_size_t, c_int, P(c_void_p), P(c_size_t)]),
    ("moe_tokenizer_piece", c_void_p, [c_void_p, c_int32, P(c_size_t)]),
    ("moe_tokenizer_token_id", c_int32, [c_void_p, c_char_p, c_size_t]),
    ("moe_tokenizer_is_special", c_int, [c_void_p, c_int32]),
    ("moe_detokenizer_new", c_int, [c_void_p, c_int, P(c_void_p)]),
    ("moe_detokenizer_push", c_int, [c_void_p, c_int32, P(c_void_p), P(c_size_t)]),
    ("moe_detokenizer_flush", c_int, [c_void_p, P(c_void_p), P(c_size_t)]),
    ("moe_detokenizer_free", None, [c_void_p]),
]

# the functions that return a moe_status
_STATUS = {"moe_model_load_opts", "moe_session_new", "moe_session_eval", "moe_session_eval_batch",
           "moe_token_sampler_new", "moe_tokenizer_load", "moe_tokenizer_encode", "moe_tokenizer_decode",
           "moe_detokenizer_new", "moe_detokenizer_push", "moe_detokenizer_flush"}

libc = ctypes.CDLL(None)
libc.free.argtypes = [c_void_p]
libc.free.restype = None


def _checked(name, fn):
    def call(*args):
        st = fn(*args)
        if st != 0:
            raise MoeError(st, lib.moe_last_error().decode("utf-8", "replace"))
        return st
    call.__name__ = name
    return call


api = {}
for _name, _res, _args in _SIGS:
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
    api[_name] = _f
    if _name in _STATUS:
        api[_name] = _checked(_name, _f)
