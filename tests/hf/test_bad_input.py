"""test_bad_input.py - hostile and broken model folders, one case each.

Builds a tiny valid qwen3_moe folder by hand (config.json + model.safetensors written with struct and
json, so every byte is under the test's control), checks that `moe info` and `moe logits` accept it,
then corrupts copies of it in one way each. Every bad case must end with exit code 2 (1 for usage
errors), exactly one line on stderr of the form `moe: <path>: <problem>`, that line naming the file at
fault and a word of the problem, and nothing from the sanitizers (a leak or a UB report would add
lines and change the exit code). A case that hangs fails on the timeout.

Run: python test_bad_input.py --moe BIN --work DIR [-k SUBSTRING]
"""
import argparse
import json
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys

TIMEOUT = 120  # seconds per command; sanitizer builds are slow but nothing here needs more than ~1 s

# ---- the tiny model ---------------------------------------------------------------------------

CONFIG = {
    "model_type": "qwen3_moe",
    "architectures": ["Qwen3MoeForCausalLM"],
    "vocab_size": 32,
    "hidden_size": 8,
    "intermediate_size": 16,
    "moe_intermediate_size": 4,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "norm_topk_prob": True,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
}


def tensor_shapes(cfg):
    """(name, shape) of every tensor a qwen3_moe checkpoint holds, in transformers' naming."""
    V, D, H, KV, hd = cfg["vocab_size"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    E, F = cfg["num_experts"], cfg["moe_intermediate_size"]
    out = [("model.embed_tokens.weight", [V, D]), ("model.norm.weight", [D]), ("lm_head.weight", [V, D])]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", [D]), (p + "post_attention_layernorm.weight", [D]),
                (p + "self_attn.q_proj.weight", [H * hd, D]), (p + "self_attn.k_proj.weight", [KV * hd, D]),
                (p + "self_attn.v_proj.weight", [KV * hd, D]), (p + "self_attn.o_proj.weight", [D, H * hd]),
                (p + "self_attn.q_norm.weight", [hd]), (p + "self_attn.k_norm.weight", [hd]),
                (p + "mlp.gate.weight", [E, D])]
        for e in range(E):
            q = f"{p}mlp.experts.{e}."
            out += [(q + "gate_proj.weight", [F, D]), (q + "up_proj.weight", [F, D]), (q + "down_proj.weight", [D, F])]
    return out


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def make_tensors(cfg, seed=0):
    """[(name, dtype, shape, bytes)] with small random F32 values (norm weights near 1)."""
    rng = random.Random(seed)
    out = []
    for name, shape in tensor_shapes(cfg):
        n = numel(shape)
        if name.endswith("norm.weight"):
            vals = [1.0 + 0.1 * rng.uniform(-1, 1) for _ in range(n)]
        else:
            vals = [0.2 * rng.uniform(-1, 1) for _ in range(n)]
        out.append((name, "F32", shape, struct.pack(f"<{n}f", *vals)))
    return out


def header_dict(tensors, metadata=None):
    """The header a correct writer produces: data_offsets packed in order without holes."""
    h, off = {}, 0
    if metadata is not None:
        h["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    return h


def st_bytes(header, data, pad=True):
    """File image: u64 little-endian header length, header, data. header may be a dict or raw bytes."""
    hb = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:  # like the reference writer: pad the header with spaces to a multiple of 8
        hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def write_st(path, tensors, header=None):
    data = b"".join(t[3] for t in tensors)
    with open(path, "wb") as f:
        f.write(st_bytes(header if header is not None else header_dict(tensors, {"format": "pt"}), data))


def write_model(d, cfg=None, tensors=None, config_text=None):
    os.makedirs(d, exist_ok=True)
    cfg = cfg or CONFIG
    with open(os.path.join(d, "config.json"), "wb") as f:
        f.write(config_text if config_text is not None else json.dumps(cfg, indent=2).encode())
    if tensors is not False:
        write_st(os.path.join(d, "model.safetensors"), tensors if tensors is not None else make_tensors(cfg))


def write_sharded(d, tensors, n_shards=2, index=None):
    """Split tensors over n_shards files and write model.safetensors.index.json."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    names = [f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors" for i in range(n_shards)]
    parts = [tensors[i::n_shards] for i in range(n_shards)]
    weight_map = {}
    for fname, part in zip(names, parts):
        write_st(os.path.join(d, fname), part)
        for t in part:
            weight_map[t[0]] = fname
    idx = index if index is not None else {"metadata": {"total_size": sum(len(t[3]) for t in tensors)},
                                           "weight_map": weight_map}
    with open(os.path.join(d, "model.safetensors.index.json"), "wb") as f:
        f.write(idx if isinstance(idx, bytes) else json.dumps(idx, indent=2).encode())
    return names, weight_map


# ---- running moe ------------------------------------------------------------------------------

class Runner:
    def __init__(self, moe, work):
        self.moe, self.work = moe, work
        self.sanitized = os.environ.get("MOE_TEST_SANITIZED") == "1" or b"__asan_init" in open(moe, "rb").read()
        self.failures, self.passed = [], 0

    def run(self, args, mem_limit=None):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        limit = None
        if mem_limit and not self.sanitized:  # ASan reserves terabytes of address space: no RLIMIT_AS there
            def limit():
                resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
        try:
            p = subprocess.run([self.moe] + args, capture_output=True, timeout=TIMEOUT, env=env, preexec_fn=limit)
        except subprocess.TimeoutExpired:
            return None, b"", b"TIMEOUT"
        return p.returncode, p.stdout, p.stderr

    def expect(self, case, args, code, file_word, problem):
        """One bad-input case: exit code, one stderr line naming file_word and matching problem."""
        rc, out, err = self.run(args)
        text = err.decode("utf-8", "replace")
        lines = text.splitlines()
        why = []
        if rc is None:
            why.append(f"hung for more than {TIMEOUT} s")
        elif rc != code:
            why.append(f"exit code {rc}, expected {code}")
        if len(lines) != 1:
            why.append(f"{len(lines)} lines on stderr, expected 1")
        line = lines[0] if lines else ""
        if not line.startswith("moe"):
            why.append("stderr line does not start with 'moe'")
        if file_word and file_word not in line:
            why.append(f"stderr does not name {file_word!r}")
        if problem and not re.search(problem, line, re.I):
            why.append(f"stderr does not match /{problem}/")
        if why:
            self.failures.append(case)
            print(f"FAIL {case}: {'; '.join(why)}\n     moe {' '.join(args)[:200]}\n     stderr: {text[:600]!r}")
        else:
            self.passed += 1
            print(f"ok   {case}: {line[:160]}")

    def expect_ok(self, case, args, mem_limit=None):
        rc, out, err = self.run(args, mem_limit)
        if rc != 0 or err.strip():
            self.failures.append(case)
            print(f"FAIL {case}: exit {rc}, stderr {err.decode('utf-8', 'replace')[:600]!r}")
        else:
            self.passed += 1
            print(f"ok   {case}")
        return out


def write_ids(work, text):
    path = os.path.join(work, "ids.txt")
    with open(path, "w") as f:
        f.write(text)
    return path


# ---- the cases ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    R = Runner(a.moe, work)
    tensors = make_tensors(CONFIG)
    base_data = b"".join(t[3] for t in tensors)
    n_cases = [0]

    def case_dir(name):
        return os.path.join(work, name)

    def want(name):
        n_cases[0] += 1
        return a.k in name

    # The valid model loads and runs.
    good = case_dir("good")
    write_model(good)
    if want("good"):
        R.expect_ok("good.info", ["info", good])
        out = R.expect_ok("good.logits", ["logits", good, "--tokens", "1,2,3"])
        try:
            rows = json.loads(out)["logits"]
            if len(rows) != 3 or any(len(r) != CONFIG["vocab_size"] for r in rows):
                raise ValueError("wrong logits shape")
        except ValueError as e:
            R.failures.append("good.logits.json")
            print(f"FAIL good.logits.json: {e}")

    # -- the folder --
    if want("folder.missing"):
        R.expect("folder.missing", ["info", case_dir("no_such_model")], 2, "no_such_model", r"no such|not found|cannot open")
    if want("folder.is_file"):
        p = case_dir("plain_file")
        open(p, "w").close()
        R.expect("folder.is_file", ["info", p], 2, "plain_file", r"not a folder|not a directory")
    if want("folder.no_config"):
        d = case_dir("no_config")
        write_model(d)
        os.remove(os.path.join(d, "config.json"))
        R.expect("folder.no_config", ["info", d], 2, "config.json", r"cannot open|no such|missing")
    if want("folder.no_weights"):
        d = case_dir("no_weights")
        write_model(d, tensors=False)
        R.expect("folder.no_weights", ["info", d], 2, "no_weights", r"model\.safetensors")
    if want("folder.config_is_dir"):
        d = case_dir("config_is_dir")
        write_model(d, config_text=b"")
        os.remove(os.path.join(d, "config.json"))
        os.mkdir(os.path.join(d, "config.json"))
        R.expect("folder.config_is_dir", ["info", d], 2, "config.json", r"not a regular file")
    if want("folder.weights_is_dir"):
        d = case_dir("weights_is_dir")
        write_model(d, tensors=False)
        os.mkdir(os.path.join(d, "model.safetensors"))
        R.expect("folder.weights_is_dir", ["info", d], 2, "model.safetensors", r"not a regular file")

    # -- safetensors: the file image --
    def st_case(name, image, problem, cmd="info"):
        if not want(name):
            return
        d = case_dir(name)
        write_model(d, tensors=False)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(image)
        args = ["info", d] if cmd == "info" else ["logits", d, "--tokens", "1,2"]
        R.expect(name, args, 2, "model.safetensors", problem)

    good_image = st_bytes(header_dict(tensors, {"format": "pt"}), base_data)
    hlen = struct.unpack("<Q", good_image[:8])[0]
    st_case("st.empty", b"", r"too short")
    st_case("st.short_length", b"\x10\x00\x00", r"too short")
    st_case("st.cut_in_header", good_image[:8 + hlen // 2], r"header length .* past the end")
    st_case("st.cut_in_data", good_image[:-10], r"past the data|truncated")
    st_case("st.cut_at_data", good_image[:8 + hlen], r"past the data|truncated")
    st_case("st.hlen_past_eof", struct.pack("<Q", len(good_image)) + good_image[8:], r"past the end")
    st_case("st.hlen_2_63", struct.pack("<Q", 1 << 63) + good_image[8:], r"past the end")
    st_case("st.hlen_max", struct.pack("<Q", (1 << 64) - 1) + good_image[8:], r"past the end")
    st_case("st.hlen_200MB_short_file", struct.pack("<Q", 200 << 20) + good_image[8:], r"past the end")
    E = "model.norm.weight"  # a small tensor in the middle of the data
    ebeg, eend = header_dict(tensors)[E]["data_offsets"]
    st_case("st.hlen_zero", struct.pack("<Q", 0) + good_image[8:], r"header")
    st_case("st.header_not_json", st_bytes(b"this is not json", base_data), r"malformed JSON")
    st_case("st.header_array", st_bytes(b"[1, 2, 3]", base_data), r"not a JSON object")
    st_case("st.header_string", st_bytes(b'"x"', base_data), r"not a JSON object")
    st_case("st.header_trailing_comma_at_eof", struct.pack("<Q", 7) + b'{"a":1,', r"malformed JSON")
    st_case("st.header_nul", st_bytes(b'{"a\x00": 1}', base_data), r"NUL")
    st_case("st.header_deep", st_bytes(b"[" * 100000, base_data), r"nest|malformed")
    st_case("st.header_deep_objects", st_bytes(b'{"a":' * 5000, base_data), r"nest|malformed")
    bad_utf8 = json.dumps(header_dict(tensors)).encode().replace(b"model.norm.weight", b"model.norm\xff.weight")
    st_case("st.header_not_utf8", st_bytes(bad_utf8, base_data), r"UTF-8")
    overlong = json.dumps(header_dict(tensors)).encode().replace(b"model.norm.weight", b"model.norm\xc0\xae.weight")
    st_case("st.header_overlong_utf8", st_bytes(overlong, base_data), r"UTF-8")
    # duplicate tensor names: a raw header, since a dict cannot hold them
    h = header_dict(tensors)
    raw = json.dumps(h)
    first = '"model.norm.weight": ' + json.dumps(h["model.norm.weight"])
    dup = raw.replace(first, first + ", " + first)
    st_case("st.duplicate_name", st_bytes(dup.encode(), base_data), r"duplicate")

    def with_header(mutate, data=base_data, meta=True):
        h = header_dict(tensors, {"format": "pt"} if meta else None)
        mutate(h)
        return st_bytes(h, data)

    def set_field(name, field, value):
        def m(h):
            h[name][field] = value
        return m

    st_case("st.offsets_past_data", with_header(set_field(E, "data_offsets", [ebeg, len(base_data) + 4])), r"past the data")
    st_case("st.offsets_huge", with_header(set_field(E, "data_offsets", [ebeg, 2 ** 62])), r"data_offsets")
    st_case("st.offsets_reversed", with_header(set_field(E, "data_offsets", [eend, ebeg])), r"reversed")
    st_case("st.offsets_negative", with_header(set_field(E, "data_offsets", [-4, eend])), r"data_offsets")
    st_case("st.offsets_one", with_header(set_field(E, "data_offsets", [ebeg])), r"data_offsets")
    st_case("st.offsets_float", with_header(set_field(E, "data_offsets", [ebeg + 0.5, eend])), r"data_offsets")
    st_case("st.offsets_string", with_header(set_field(E, "data_offsets", "0-32")), r"data_offsets")

    def overlap(h):  # make the next tensor start 4 bytes early and this one end there too
        names = list(h)
        i = names.index(E)
        nxt = names[i + 1]
        b, e = h[nxt]["data_offsets"]
        h[nxt]["data_offsets"] = [b - 4, e - 4]
    st_case("st.overlap", with_header(overlap), r"overlap")

    def hole(h):  # shift every tensor after E by 4 bytes, leaving 4 unowned bytes
        after = False
        for k, v in h.items():
            if k == "__metadata__":
                continue
            if after:
                v["data_offsets"] = [v["data_offsets"][0] + 4, v["data_offsets"][1] + 4]
            after = after or k == E
    mid = header_dict(tensors)[E]["data_offsets"][1]
    st_case("st.hole", with_header(hole, base_data[:mid] + b"\0" * 4 + base_data[mid:]), r"belong to no tensor|hole")
    st_case("st.trailing_bytes", st_bytes(header_dict(tensors), base_data + b"\0" * 8), r"trailing")
    st_case("st.size_mismatch", with_header(set_field(E, "shape", [CONFIG["hidden_size"] + 1])), r"need|bytes")
    st_case("st.shape_negative", with_header(set_field(E, "shape", [-8])), r"shape")
    st_case("st.shape_fraction", with_header(set_field(E, "shape", [8.5])), r"shape")
    inf_shape = json.dumps(header_dict(tensors)).replace('"shape": [8]', '"shape": [1e999]', 1).encode()
    st_case("st.shape_inf", st_bytes(inf_shape, base_data), r"shape")
    big_offset = json.dumps(header_dict(tensors)).replace(f"[{ebeg}, {eend}]", f"[{ebeg}, 1e300]").encode()
    st_case("st.offsets_1e300", st_bytes(big_offset, base_data), r"data_offsets")
    st_case("st.shape_nan_string", with_header(set_field(E, "shape", ["NaN"])), r"shape")
    st_case("st.shape_null", with_header(set_field(E, "shape", [None])), r"shape")
    st_case("st.shape_not_array", with_header(set_field(E, "shape", 8)), r"shape")
    st_case("st.shape_overflow", with_header(set_field(E, "shape", [2 ** 52, 2 ** 52, 2 ** 52])), r"shape|overflow")
    st_case("st.shape_too_many_dims", with_header(set_field(E, "shape", [1] * 9 + [8])), r"dimensions")
    st_case("st.dtype_unknown", with_header(set_field(E, "dtype", "F12")), r"unknown dtype")
    st_case("st.dtype_not_string", with_header(set_field(E, "dtype", 4)), r"dtype")
    st_case("st.dtype_missing", with_header(lambda h: h[E].pop("dtype")), r"dtype")
    st_case("st.extra_field", with_header(set_field(E, "offset", 3)), r"unknown field")
    st_case("st.entry_not_object", with_header(lambda h: h.__setitem__("x", [1])), r"not an object")
    st_case("st.metadata_not_strings", with_header(lambda h: h.__setitem__("__metadata__", {"a": 1})), r"__metadata__")
    st_case("st.empty_name", with_header(lambda h: h.__setitem__("", {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]})),
            r"empty tensor name")

    # -- safetensors: valid files whose tensors do not fit the config --
    def tensor_case(name, tlist, problem, file_word="model.safetensors"):
        if not want(name):
            return
        d = case_dir(name)
        write_model(d, tensors=tlist)
        R.expect(name, ["info", d], 2, file_word, problem)

    def replace(name, dtype=None, shape=None):
        out = []
        for t in tensors:
            if t[0] == name:
                sh = shape if shape is not None else t[2]
                dt = dtype or t[1]
                size = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I8": 1, "F64": 8, "BOOL": 1}[dt]
                out.append((name, dt, sh, bytes(numel(sh) * size)))
            else:
                out.append(t)
        return out

    tensor_case("bind.dtype_i32", replace("model.layers.0.self_attn.q_proj.weight", dtype="I32"), r"dtype")
    tensor_case("bind.dtype_i8_vector", replace("model.norm.weight", dtype="I8"), r"dtype")
    tensor_case("bind.dtype_bool", replace("model.layers.1.mlp.experts.3.down_proj.weight", dtype="BOOL"), r"dtype")
    tensor_case("bind.hidden_mismatch", replace("model.embed_tokens.weight", shape=[32, 9]), r"shape")
    tensor_case("bind.vocab_mismatch", replace("lm_head.weight", shape=[31, 8]), r"shape")
    tensor_case("bind.rank_mismatch", replace("model.layers.0.mlp.gate.weight", shape=[32]), r"shape")
    tensor_case("bind.expert_mismatch", replace("model.layers.1.mlp.experts.2.up_proj.weight", shape=[5, 8]), r"shape")
    tensor_case("bind.norm_mismatch", replace("model.layers.0.self_attn.k_norm.weight", shape=[8]), r"shape")
    tensor_case("bind.missing_tensor", [t for t in tensors if t[0] != "model.layers.1.mlp.experts.3.gate_proj.weight"],
                r"missing tensor")
    tensor_case("bind.missing_embed", [t for t in tensors if t[0] != "model.embed_tokens.weight"], r"missing tensor")
    tensor_case("bind.no_tensors", [], r"holds 0 tensors")

    # -- sharded models --
    def shard_case(name, mutate, file_word, problem, tlist=None):
        if not want(name):
            return
        d = case_dir(name)
        names, wm = write_sharded(d, tlist or tensors)
        mutate(d, names, wm)
        R.expect(name, ["info", d], 2, file_word, problem)

    def write_index(d, obj):
        with open(os.path.join(d, "model.safetensors.index.json"), "wb") as f:
            f.write(obj if isinstance(obj, bytes) else json.dumps(obj).encode())

    if want("shard.good"):
        d = case_dir("shard.good")
        write_sharded(d, tensors, 3)
        R.expect_ok("shard.good", ["info", d])
    IDX = "model.safetensors.index.json"
    shard_case("shard.index_malformed", lambda d, n, wm: write_index(d, b'{"weight_map": {"a": "b",}'), IDX, r"malformed")
    shard_case("shard.index_not_utf8", lambda d, n, wm: write_index(d, b'{"weight_map": {"\xfe": "x"}}'), IDX, r"UTF-8")
    shard_case("shard.index_no_map", lambda d, n, wm: write_index(d, {"metadata": {}}), IDX, r"weight_map")
    shard_case("shard.index_map_array", lambda d, n, wm: write_index(d, {"weight_map": ["a"]}), IDX, r"weight_map")
    shard_case("shard.index_empty_map", lambda d, n, wm: write_index(d, {"weight_map": {}}), IDX, r"empty")
    shard_case("shard.index_value_number", lambda d, n, wm: write_index(d, {"weight_map": dict(wm, **{E: 3})}), IDX,
               r"must name")
    shard_case("shard.missing_shard", lambda d, n, wm: os.remove(os.path.join(d, n[1])), "model-00002-of-00002.safetensors",
               r"cannot open|no such")
    shard_case("shard.path_traversal",
               lambda d, n, wm: write_index(d, {"weight_map": dict(wm, **{E: "../" + n[0]})}), IDX, r"must name")
    shard_case("shard.absolute_path",
               lambda d, n, wm: write_index(d, {"weight_map": dict(wm, **{E: os.path.join(d, n[0])})}), IDX, r"must name")
    shard_case("shard.not_safetensors_name",
               lambda d, n, wm: write_index(d, {"weight_map": dict(wm, **{E: "config.json"})}), IDX, r"must name")

    def absent(d, n, wm):  # the index lists a tensor its shard does not hold
        wm = dict(wm)
        wm["model.layers.0.extra.weight"] = n[0]
        write_index(d, {"weight_map": wm})
    shard_case("shard.tensor_absent", absent, IDX, r"not in")

    def wrong_shard(d, n, wm):  # the index names the other shard for a tensor
        wm = dict(wm)
        wm[E] = n[0] if wm[E] == n[1] else n[1]
        write_index(d, {"weight_map": wm})
    shard_case("shard.tensor_wrong_shard", wrong_shard, IDX, r"not in")

    def twice(d, n, wm):  # the same tensor stored in both shards
        part = [t for t in tensors[1::2]] + [tensors[0]]
        write_st(os.path.join(d, n[1]), part)
    shard_case("shard.same_tensor_twice", twice, "model-0000", r"also appears")

    def corrupt_shard(d, n, wm):
        p = os.path.join(d, n[1])
        data = open(p, "rb").read()
        open(p, "wb").write(data[:-3])
    shard_case("shard.truncated_shard", corrupt_shard, "model-00002-of-00002.safetensors", r"past the data|truncated")

    # -- config.json --
    def cfg_case(name, problem, text=None, **changes):
        if not want(name):
            return
        d = case_dir(name)
        cfg = dict(CONFIG)
        for k, v in changes.items():
            if v is DELETE:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        write_model(d, cfg=cfg, tensors=tensors, config_text=text)
        R.expect(name, ["info", d], 2, "config.json", problem)

    cfg_text = json.dumps(CONFIG, indent=2)
    cfg_case("config.empty", r"malformed", text=b"")
    cfg_case("config.malformed", r"malformed", text=cfg_text[:-5].encode())
    cfg_case("config.not_utf8", r"UTF-8", text=cfg_text.replace('"silu"', '"s\xe9lu"').encode("latin-1"))
    cfg_case("config.utf16_surrogate", r"UTF-8", text=cfg_text.replace('"silu"', '"s\xed\xa0\x80lu"').encode("latin-1"))
    cfg_case("config.trailing_garbage", r"after the JSON", text=(cfg_text + "\n}").encode())
    cfg_case("config.two_documents", r"after the JSON", text=(cfg_text + cfg_text).encode())
    cfg_case("config.duplicate_key", r"duplicate",
             text=cfg_text.replace('"hidden_size": 8', '"hidden_size": 8, "hidden_size": 16').encode())
    cfg_case("config.nan", r"malformed", text=cfg_text.replace('"rope_theta": 10000.0', '"rope_theta": NaN').encode())
    cfg_case("config.infinity", r"malformed", text=cfg_text.replace('"rope_theta": 10000.0', '"rope_theta": Infinity').encode())
    cfg_case("config.minus_infinity", r"malformed",
             text=cfg_text.replace('"rope_theta": 10000.0', '"rope_theta": -Infinity').encode())
    cfg_case("config.huge_exponent", r"rope_theta", text=cfg_text.replace('"rope_theta": 10000.0', '"rope_theta": 1e999').encode())
    cfg_case("config.too_big", r"more than the .* allowed", text=cfg_text.encode() + b" " * (17 << 20))
    cfg_case("config.not_object", r"not a JSON object", text=b"[1, 2]")
    cfg_case("config.deep_nesting", r"nest|malformed", text=b"[" * 100000)
    cfg_case("config.deep_nesting_closed", r"nest", text=b"[" * 900 + b"]" * 900)
    cfg_case("config.nul_byte", r"NUL", text=cfg_text.replace('"silu"', '"si\x00lu"').encode())
    cfg_case("config.control_char", r"control character", text=cfg_text.replace('"silu"', '"si\x01lu"').encode())
    cfg_case("config.raw_newline_in_string", r"control character", text=cfg_text.replace('"silu"', '"si\nlu"').encode())
    cfg_case("config.hidden_negative", r"hidden_size", hidden_size=-1)
    cfg_case("config.layers_zero", r"num_hidden_layers", num_hidden_layers=0)
    cfg_case("config.layers_huge", r"num_hidden_layers", num_hidden_layers=100000)
    cfg_case("config.hidden_huge", r"hidden_size", hidden_size=1e12)
    cfg_case("config.vocab_huge", r"vocab_size", vocab_size=2 ** 40)
    cfg_case("config.heads_fraction", r"num_attention_heads", num_attention_heads=2.5)
    cfg_case("config.heads_string", r"num_attention_heads", num_attention_heads="2")
    cfg_case("config.hidden_bool", r"hidden_size", hidden_size=True)
    cfg_case("config.layers_array", r"num_hidden_layers", num_hidden_layers=[2])
    cfg_case("config.model_type_missing", r"model_type", model_type=DELETE)
    cfg_case("config.model_type_unknown", r"model_type", model_type="gpt2")
    cfg_case("config.model_type_number", r"model_type", model_type=7)
    cfg_case("config.hidden_act_gelu", r"hidden_act", hidden_act="gelu")
    cfg_case("config.rope_dynamic", r"rope.*dynamic|dynamic", rope_scaling={"type": "dynamic", "factor": 2.0})
    cfg_case("config.rope_scaling_string", r"rope_scaling", rope_scaling="linear")
    cfg_case("config.rope_linear_no_factor", r"factor", rope_scaling={"rope_type": "linear"})
    cfg_case("config.rope_theta_zero", r"rope_theta", rope_theta=0)
    # transformers 5's spellings: per-layer-type rope dictionaries moe cannot follow, partial rotation
    # moved inside rope_parameters, and the two names of the expert count disagreeing
    cfg_case("config.rope_parameters_per_layer_type", r"per layer type",
             rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e4},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 1e6}})
    cfg_case("config.rope_parameters_partial_rotary", r"partial_rotary_factor",
             rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5})
    cfg_case("config.rope_parameters_not_object", r"rope_parameters", rope_parameters=[1])
    cfg_case("config.experts_two_spellings", r"num_experts.*num_local_experts.*disagree", num_local_experts=8)
    cfg_case("config.eps_negative", r"rms_norm_eps", rms_norm_eps=-1e-6)
    cfg_case("config.topk_over_experts", r"num_experts_per_tok", num_experts_per_tok=5)
    cfg_case("config.topk_zero", r"num_experts_per_tok", num_experts_per_tok=0)
    cfg_case("config.heads_not_multiple_of_kv", r"num_key_value_heads", num_attention_heads=3, num_key_value_heads=2)
    cfg_case("config.kv_heads_zero", r"num_key_value_heads", num_key_value_heads=0)
    cfg_case("config.hidden_not_divisible", r"divisible", head_dim=DELETE, hidden_size=9)
    cfg_case("config.head_dim_odd", r"rotary|even", head_dim=3)
    cfg_case("config.mlp_only_layers_bad", r"mlp_only_layers", mlp_only_layers=[-1])
    cfg_case("config.mlp_only_layers_type", r"mlp_only_layers", mlp_only_layers="all")
    cfg_case("config.sparse_step_zero", r"decoder_sparse_step", decoder_sparse_step=0)
    cfg_case("config.attention_width", r"attention width|too large", num_attention_heads=4096, num_key_value_heads=1,
             head_dim=65536)
    # the other families' own keys
    ds2 = {"model_type": "deepseek_v2", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "kv_lora_rank": 4, "q_lora_rank": None,
           "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 4, "n_routed_experts": 4,
           "num_experts_per_tok": 2, "moe_intermediate_size": 4, "n_shared_experts": 1}
    for key, val, problem in [("topk_method", "noaux_tc", r"topk_method"),
                              ("n_group", 3, r"n_group|divisible"),
                              ("n_shared_experts", 65536, r"n_shared_experts|shared"),  # x 65536 wraps int
                              ("moe_intermediate_size", 1 << 20, r"shared|intermediate"),
                              ("qk_rope_head_dim", 3, r"rotary|even"),
                              ("mlp_bias", True, r"mlp_bias")]:
        c = dict(ds2, **{key: val})
        if key == "n_group":
            c["topk_method"] = "group_limited_greedy"
            c["topk_group"] = 1
        if key == "moe_intermediate_size":
            c["n_shared_experts"] = 4096
        if key == "n_shared_experts":
            c["moe_intermediate_size"] = 65536
        cfg_case(f"config.deepseek_v2.{key}", problem, text=json.dumps(c).encode())
    ds3 = dict(ds2, model_type="deepseek_v3", n_group=2, topk_group=1, first_k_dense_replace=0)
    cfg_case("config.deepseek_v3.topk_group", r"topk_group", text=json.dumps(dict(ds3, topk_group=3)).encode())
    cfg_case("config.mixtral.experts_zero", r"num_local_experts",
             text=json.dumps({"model_type": "mixtral", "num_local_experts": 0}).encode())
    cfg_case("config.olmoe.clip_negative", r"clip_qkv",
             text=json.dumps({"model_type": "olmoe", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 2, "clip_qkv": -1}).encode())
    cfg_case("config.qwen2.layer_types", r"layer_types",
             text=json.dumps({"model_type": "qwen2", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 2,
                              "layer_types": ["full_attention"]}).encode())
    cfg_case("config.mistral.sliding_negative", r"sliding_window",
             text=json.dumps({"model_type": "mistral", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 2,
                              "sliding_window": -5}).encode())
    # the families of issue 10 (gpt_oss, glm4_moe, ernie4_5_moe, granitemoe(shared), phimoe, minimax_m2)
    small = {"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 4}
    rp = {"rope_type": "default", "rope_theta": 1e4}
    longrope = {"rope_type": "longrope", "rope_theta": 1e4, "short_factor": [1.0, 2.0], "long_factor": [1.0, 2.0],
                "short_mscale": 1.1, "long_mscale": 1.2, "original_max_position_embeddings": 16}
    for name, c, problem in [
            ("glm4_moe.partial_over_1", {"model_type": "glm4_moe", "partial_rotary_factor": 1.5}, r"partial_rotary_factor"),
            ("glm4_moe.partial_zero", {"model_type": "glm4_moe", "rope_parameters": dict(rp, partial_rotary_factor=0)},
             r"partial_rotary_factor"),
            ("glm4_moe.partial_two_values", {"model_type": "glm4_moe", "partial_rotary_factor": 0.5,
                                             "rope_parameters": dict(rp, partial_rotary_factor=0.25)}, r"differs"),
            ("glm4_moe.partial_odd", {"model_type": "glm4_moe", "head_dim": 6}, r"rotary dimension 3"),
            ("glm4_moe.experts_two_spellings", {"model_type": "glm4_moe", "n_routed_experts": 4, "num_local_experts": 8},
             r"disagree"),
            ("glm4_moe.group_uneven", {"model_type": "glm4_moe", "n_routed_experts": 6, "num_experts_per_tok": 2, "n_group": 4},
             r"n_group"),
            ("minimax_m2.rotary_dim_over_head", {"model_type": "minimax_m2", "rotary_dim": 8}, r"exceeds head_dim"),
            ("minimax_m2.rotary_dim_odd", {"model_type": "minimax_m2", "rotary_dim": 3}, r"even"),
            ("phimoe.top_k_3", {"model_type": "phimoe", "num_experts_per_tok": 3}, r"exactly 2"),
            ("phimoe.jitter_negative", {"model_type": "phimoe", "router_jitter_noise": -1}, r"router_jitter_noise"),
            ("phimoe.rope_yarn", {"model_type": "phimoe", "rope_parameters": {"rope_type": "yarn", "factor": 2.0,
                                                                              "rope_theta": 1e4}}, r"not supported for phimoe"),
            ("phimoe.longrope_length", {"model_type": "phimoe", "rope_parameters": dict(longrope, short_factor=[1.0])},
             r"short_factor has 1"),
            ("phimoe.longrope_negative", {"model_type": "phimoe", "rope_parameters": dict(longrope, short_factor=[1.0, -2.0])},
             r"positive"),
            ("phimoe.longrope_not_list", {"model_type": "phimoe", "rope_parameters": dict(longrope, long_factor=2.0)},
             r"long_factor"),
            ("phimoe.longrope_no_mscale", {"model_type": "phimoe",
                                           "rope_parameters": {k: v for k, v in longrope.items() if k != "short_mscale"}},
             r"short_mscale"),
            ("phimoe.longrope_huge", {"model_type": "phimoe", "head_dim": 2048,
                                      "rope_parameters": dict(longrope, short_factor=[1.0] * 1024)}, r"more than 512"),
            ("llama.longrope", {"model_type": "llama", "rope_parameters": longrope}, r"longrope.*not supported"),
            ("granitemoe.logits_scaling_zero", {"model_type": "granitemoe", "logits_scaling": 0}, r"logits_scaling"),
            ("granitemoeshared.shared_negative", {"model_type": "granitemoeshared", "shared_intermediate_size": -4},
             r"shared_intermediate_size"),
            ("ernie4_5_moe.use_bias", {"model_type": "ernie4_5_moe", "use_bias": True}, r"use_bias"),
            ("ernie4_5_moe.experts_list", {"model_type": "ernie4_5_moe", "moe_num_experts": [4, 4]}, r"moe_num_experts"),
            ("ernie4_5_moe.interval_zero", {"model_type": "ernie4_5_moe", "moe_layer_interval": 0}, r"moe_layer_interval"),
            ("ernie4_5_moe.k_two_spellings", {"model_type": "ernie4_5_moe", "moe_k": 2, "num_experts_per_tok": 3},
             r"disagree")]:
        cfg_case(f"config.{name}", problem, text=json.dumps(dict(small, **c)).encode())

    # -- resource exhaustion: sizes that would need absurd memory must fail on the tensors, fast --
    cfg_case_t = lambda name, problem, file_word, **ch: tensor_cfg_case(name, problem, file_word, **ch)

    def tensor_cfg_case(name, problem, file_word, **changes):
        if not want(name):
            return
        d = case_dir(name)
        write_model(d, cfg=dict(CONFIG, **changes), tensors=tensors)
        R.expect(name, ["info", d], 2, file_word, problem)

    cfg_case_t("huge.vocab_times_hidden", r"shape", "model.safetensors", vocab_size=1 << 24, hidden_size=1 << 20)
    cfg_case_t("huge.experts", r"config.json.*expert tensors", "model.safetensors", num_experts=65536, num_experts_per_tok=2,
               num_hidden_layers=1024)
    cfg_case_t("huge.intermediate", r"shape", "model.safetensors", moe_intermediate_size=1 << 20, intermediate_size=1 << 20)
    if want("huge.max_position"):  # a valid model claiming a huge context: logits must size its cache by the tokens
        d = case_dir("huge.max_position")
        # intermediate_size is unused by an all-MoE qwen3_moe; a huge value must not size scratch buffers
        write_model(d, cfg=dict(CONFIG, max_position_embeddings=1 << 30, intermediate_size=1 << 20))
        # a cache for 2^30 positions would take 64 GiB of address space; 1 GiB is plenty for 3 tokens
        R.expect_ok("huge.max_position.logits", ["logits", d, "--tokens", "1,2,3"], mem_limit=1 << 30)
        R.expect_ok("huge.max_position.generate", ["generate", d, "--tokens", "1,2,3", "-n", "2"], mem_limit=1 << 30)
        R.expect_ok("huge.intermediate_unused", ["logits", d, "--tokens", ",".join(["1"] * 300)], mem_limit=1 << 30)

    # a header of 300k zero-size tensors (17 MB of JSON, no data): memory must follow what the file
    # holds, so beyond a small allowance every tensor must own data; refused before the JSON tree exists
    zs = header_dict(tensors, {"format": "pt"})
    for i in range(300000):
        zs[f"z.{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    st_case("huge.zero_size_tensors", st_bytes(zs, base_data), r"300\d+ tensors .* each tensor must hold data")
    if want("huge.zero_size_few"):  # a few zero-size tensors are fine
        d = case_dir("huge.zero_size_few")
        few = header_dict(tensors, {"format": "pt"})
        for i in range(100):
            few[f"z.{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
        write_model(d, tensors=False)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st_bytes(few, base_data))
        rc, _, err = R.run(["info", d])   # loads, with a warning about the unused tensors
        if rc != 0:
            R.failures.append("huge.zero_size_few")
            print(f"FAIL huge.zero_size_few: exit {rc}, stderr {err[:300]!r}")
        else:
            R.passed += 1
            print("ok   huge.zero_size_few")

    # -- valid files holding NaN / Inf weights: the run completes, every JSON written stays strict JSON
    #    (non-finite values as null plus an "error" member), and the command exits 2 naming the model --
    if want("weights.nonfinite"):
        d = case_dir("weights.nonfinite")
        V, D = CONFIG["vocab_size"], CONFIG["hidden_size"]
        bad = []
        for name, dt, shape, data in tensors:
            if name == "model.embed_tokens.weight":  # row 2 NaN, row 3 +Inf
                data = data[:2 * D * 4] + struct.pack(f"<{D}f", *[float("nan")] * D) + \
                    struct.pack(f"<{D}f", *[float("inf")] * D) + data[4 * D * 4:]
            bad.append((name, dt, shape, data))
        write_model(d, tensors=bad)

        def strict(text):   # json.loads accepts NaN and Infinity; strict JSON does not
            def refuse(tok):
                raise ValueError(f"non-JSON constant {tok}")
            return json.loads(text, parse_constant=refuse)

        routes = os.path.join(work, "weights.nonfinite.routes.json")
        R.expect("weights.nonfinite.logits", ["logits", d, "--tokens", "1,2,3", "--routes", routes], 2, d, r"not finite")
        rc, out, err = R.run(["logits", d, "--tokens", "1,2,3", "--routes", routes])
        try:
            doc = strict(out)
            rows = doc["logits"]
            if len(rows) != 3 or None not in rows[1] or "error" not in doc:
                raise ValueError("expected null logits at position 1 and an error member")
            if "error" not in strict(open(routes).read()):
                raise ValueError("the routes file has no error member")
        except (ValueError, OSError) as e:
            R.failures.append("weights.nonfinite.json")
            print(f"FAIL weights.nonfinite.json: {e}")
        R.expect("weights.nonfinite.eval", ["eval", d, "--tokens-file", write_ids(work, "1 2 3 4"), "--json"], 2, d,
                 r"not finite")
        for case, args in (("info", ["info", d, "--json"]), ("bench", ["bench", d, "-p", "3", "-n", "2", "--json",
                                                                       "--no-bandwidth"])):
            out = R.expect_ok(f"weights.nonfinite.{case}", args)
            try:
                strict(out)
            except ValueError as e:
                R.failures.append(f"weights.nonfinite.{case}.json")
                print(f"FAIL weights.nonfinite.{case}.json: {e}: {out[:200]!r}")

    # -- the command line --
    def cli_case(name, args, code, problem, file_word=None):
        if want(name):
            R.expect(name, args, code, file_word, problem)

    cli_case("cli.unknown_option", ["logits", good, "--tokens", "1", "--frobnicate"], 1, r"unknown option")
    cli_case("cli.unknown_short", ["logits", good, "--tokens", "1", "-z"], 1, r"unknown option")
    cli_case("cli.missing_value", ["logits", good, "--tokens"], 1, r"needs a value")
    cli_case("cli.non_numeric", ["logits", good, "--tokens", "1", "--ctx", "many"], 1, r"bad value")
    cli_case("cli.out_of_range", ["logits", good, "--tokens", "1", "--ctx", "0"], 1, r"bad value")
    cli_case("cli.threads_bad", ["info", good, "-t", "-3"], 1, r"bad value")
    cli_case("cli.missing_tokens", ["logits", good], 1, r"--tokens")
    cli_case("cli.missing_model", ["logits", "--tokens", "1"], 1, r"missing argument")
    cli_case("cli.extra_positional", ["info", good, good], 1, r"unexpected argument")
    cli_case("cli.unknown_command", ["frobnicate"], 1, r"unknown command")
    cli_case("cli.token_out_of_vocab", ["logits", good, "--tokens", "1,32"], 2, r"vocabulary", "good")
    cli_case("cli.token_out_of_vocab_generate", ["generate", good, "--tokens", "99999"], 2, r"vocabulary", "good")
    cli_case("cli.token_int_overflow", ["logits", good, "--tokens", "99999999999999999999"], 1, r"token id")
    cli_case("cli.token_negative", ["logits", good, "--tokens", "-1"], 1, r"token id")
    cli_case("cli.token_negative_inside", ["logits", good, "--tokens", "1,-1"], 1, r"token id")
    cli_case("cli.tokens_empty", ["logits", good, "--tokens", ""], 1, r"empty")
    cli_case("cli.tokens_trailing_comma", ["logits", good, "--tokens", "1,2,"], 1, r"trailing comma")
    cli_case("cli.tokens_double_comma", ["logits", good, "--tokens", "1,,2"], 1, r"token id")
    cli_case("cli.tokens_letters", ["logits", good, "--tokens", "1,a"], 1, r"token id")
    cli_case("cli.tokens_space", ["logits", good, "--tokens", "1, 2"], 1, r"token id")
    cli_case("cli.tokens_plus", ["logits", good, "--tokens", "+1"], 1, r"token id")
    cli_case("cli.context_too_small", ["generate", good, "--tokens", "1,2,3", "--ctx", "4"], 1, r"--ctx")
    cli_case("cli.context_too_small_logits", ["logits", good, "--tokens", "1,2,3", "--ctx", "2"], 1, r"--ctx")
    if want("cli.context_exact"):
        R.expect_ok("cli.context_exact", ["generate", good, "--tokens", "1,2,3", "--ctx", "5", "-n", "3"])
    cli_case("cli.flag_with_value", ["logits", good, "--tokens", "1", "--stepwise=yes"], 1, r"takes no value")

    print(f"\n{R.passed} passed, {len(R.failures)} failed")
    if R.failures:
        print("failed: " + " ".join(R.failures))
        sys.exit(1)
    if R.passed == 0:
        print("no case ran")
        sys.exit(1)


DELETE = object()

if __name__ == "__main__":
    main()
