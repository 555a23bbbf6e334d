"""Checks of dynamic routing and steering (docs/DYNAMIC.md) on one saved model, shared by
tests/hf/test_dynamic.py (transformers 4.57) and tests/hf5/test_hf5_dynamic.py (transformers 5).

Each check compares moe's logits or routing decisions (`moe logits --routes`) with what the rule
says, recomputed here from the router scores moe reports and from the decision without options; the
dense-mixing check compares with transformers itself run with k = the number of experts. Every check
can fail: each one also asserts that the option did change something where it must."""
import json
import math
import os
import subprocess
from collections import defaultdict

import numpy as np

TOL = 1e-4


def run(cmd, check=True):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {p.returncode}: {p.stderr.strip()[-600:]}")
    return p


def rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.max(np.abs(b), axis=-1, keepdims=True)))


class Model:
    """moe logits / routes of one saved folder with options."""

    def __init__(self, moe, d, tokens, work):
        self.moe, self.d, self.work = moe, d, work
        self.toks = ",".join(map(str, tokens))
        self.n = 0

    def logits(self, *opts, routes=False):
        self.n += 1
        out = os.path.join(self.work, f"dyn_{self.n}.json")
        rt = os.path.join(self.work, f"dyn_{self.n}.routes.json")
        run([self.moe, "logits", self.d, "--tokens", self.toks, "-o", out, *(["--routes", rt] if routes else []), *opts])
        raw = open(out, "rb").read()
        lg = np.array(json.loads(raw)["logits"], dtype=np.float64)
        if not routes:
            return raw, lg
        rs = defaultdict(dict)   # layer -> pos -> (experts, weights, scores)
        for r in json.load(open(rt))["routes"]:
            ex = [e for e in r["experts"] if e >= 0]
            w = [w for e, w in zip(r["experts"], r["weights"]) if e >= 0]
            rs[r["layer"]][r["pos"]] = (ex, w, r["scores"])
        return raw, lg, rs


def expect(cond, msg, failures):
    if not cond:
        failures.append(msg)
    return cond


def check_model(name, m, E, k, norm, scale, failures, own_count=False, dense_ref=None, masked_ref=None):
    """All checks on one model. norm / scale: the router's renormalisation and routed scaling;
    own_count: the router picks its own number of experts (SparseMixer); dense_ref(): transformers'
    logits with k = E; masked_ref(layer, expert): transformers' logits with that gate logit -inf."""
    raw0, lg0, r0 = m.logits(routes=True)
    layers = sorted(r0)
    l0 = layers[0]
    npos = len(r0[l0])

    # 1. options that change nothing: bit-identical logits
    for opts in (["--skip-threshold", "0"], ["--skip-threshold", "1e-30"]) + ((["--layer-k", f"*:{k}"],) if not own_count else ()):
        raw, _ = m.logits(*opts)
        expect(raw == raw0, f"{name}: {' '.join(opts)} changed the logits", failures)

    # 2. top-p 1 with k = E is dense mixing (transformers with num_experts_per_tok = E)
    if dense_ref is not None:
        ref = dense_ref()
        _, lg, rs = m.logits("--top-p", "1", "--layer-k", f"*:{E}", routes=True)
        err = rel_err(lg, ref)
        expect(err <= TOL, f"{name}: --top-p 1 --layer-k *:{E} vs dense transformers: rel err {err:.2e}", failures)
        expect(rel_err(lg0, ref) > 1e-3, f"{name}: dense mixing is indistinguishable from top-{k}: the check is void", failures)
        many = [len(rs[l][t][0]) for l in rs for t in rs[l]]
        expect(min(many) >= E - 1, f"{name}: --top-p 1 --layer-k *:{E} ran only {min(many)} experts for a token", failures)
        if not own_count:
            _, lg = m.logits("--layer-k", f"*:{E}")
            err = rel_err(lg, ref)
            expect(err <= TOL, f"{name}: --layer-k *:{E} vs dense transformers: rel err {err:.2e}", failures)

    # 3. top-p P: per token the fewest experts by score reaching P of the total, at most k; weights
    #    scale * p (/ sum of the chosen when the router renormalises)
    kcap = E if own_count else k
    for P in (0.6, 0.4, 0.25, 0.15, 0.08):   # the first that varies the count (sigmoid scores are flat)
        bad, counts = check_top_p(m, P, E, kcap, norm, scale)
        expect(bad == 0, f"{name}: --top-p {P}: {bad} token decisions differ from the rule", failures)
        if min(counts) < max(counts):
            break
    expect(min(counts) < max(counts), f"{name}: --top-p did not vary the experts per token", failures)

    # 4. disable: the expert never appears; logits change iff it was used
    use = defaultdict(int)
    for t, (ex, _, _) in r0[l0].items():
        for e in ex:
            use[e] += 1
    top = max(range(E), key=lambda e: (use[e], -e))
    _, lg, rs = m.logits("--disable-experts", f"{l0}:{top}", routes=True)
    seen = sum(top in rs[l0][t][0] for t in rs[l0])
    expect(seen == 0, f"{name}: disabled expert {l0}:{top} still ran for {seen} tokens", failures)
    expect(np.max(np.abs(lg - lg0)) > 1e-4, f"{name}: disabling the used expert {l0}:{top} changed nothing", failures)
    if masked_ref is not None:
        err = rel_err(lg, masked_ref(l0, top))
        expect(err <= TOL, f"{name}: --disable-experts {l0}:{top} vs transformers with that logit -inf: {err:.2e}", failures)
    _, lg, rs = m.logits("--disable-experts", f"*:{top}", routes=True)
    seen = sum(top in rs[l][t][0] for l in rs for t in rs[l])
    expect(seen == 0, f"{name}: disabled expert *:{top} still ran {seen} times", failures)
    unused = [e for e in range(E) if use[e] == 0]
    if unused:
        u = unused[0]
        _, lg, rs = m.logits("--disable-experts", f"{l0}:{u}", routes=True)
        same = all(sorted(rs[l][t][0]) == sorted(r0[l][t][0]) for l in rs for t in rs[l])
        # a renormalising router gives the same weights to the same choice; one that does not (raw softmax
        # probabilities) sees every probability grow when an expert leaves the softmax
        # (a sigmoid router's group choice may legitimately change: the expert counted in its group's score)
        if norm and not scale_free_scores(name):
            expect(same, f"{name}: disabling the unused expert {l0}:{u} changed the choice", failures)
        if same and (norm or scale_free_scores(name)):
            err = rel_err(lg, lg0)
            expect(err <= 1e-5, f"{name}: disabling the unused expert {l0}:{u} changed the logits by {err:.2e}", failures)

    # 5. force: the expert runs for every token, weighted like the token's first expert
    low = min(range(E), key=lambda e: (use[e], e))
    _, lg, rs = m.logits("--force-experts", f"{l0}:{low}", routes=True)
    missing = sum(low not in rs[l0][t][0] for t in rs[l0])
    expect(missing == 0 and len(rs[l0]) == npos, f"{name}: forced expert {l0}:{low} missing for {missing} tokens", failures)
    badw = 0
    for t, (ex, w, _) in rs[l0].items():
        if low in r0[l0][t][0]:
            continue
        others = [b for e, b in zip(ex, w) if e != low]
        if abs(w[ex.index(low)] - max(others)) > 0:
            badw += 1
    expect(badw == 0, f"{name}: forced expert's weight differs from the token's largest for {badw} tokens", failures)
    expect(np.max(np.abs(lg - lg0)) > 1e-4, f"{name}: forcing {l0}:{low} changed nothing", failures)
    _, _, rs = m.logits("--force-experts", f"*:{low}", routes=True)
    missing = sum(low not in rs[l][t][0] for l in rs for t in rs[l])
    expect(missing == 0, f"{name}: forced expert *:{low} missing {missing} times", failures)

    # 6. skip threshold (first MoE layer, whose input no option changes): drop w < W, keep the largest
    ws = sorted(w for ex, w, _ in r0[l0].values() for w in w)
    W = ws[len(ws) // 2]
    _, lg, rs = m.logits("--skip-threshold", repr(W), routes=True)
    bad = 0
    for t, (ex, w, _) in r0[l0].items():
        best = max(range(len(w)), key=lambda i: (w[i], -i))
        # moe compares the float32 weight with the double W
        want = sorted(e for i, (e, x) in enumerate(zip(ex, w)) if not (float(np.float32(x)) < W) or i == best)
        bad += sorted(rs[l0][t][0]) != want
    expect(bad == 0, f"{name}: --skip-threshold {W}: {bad} tokens differ from the rule", failures)
    expect(sum(len(v[0]) for v in rs[l0].values()) < sum(len(v[0]) for v in r0[l0].values()),
           f"{name}: --skip-threshold {W} skipped nothing", failures)

    # 7. capacity (first MoE layer): expert keeps its C largest weights; overflow dropped or rerouted
    for reroute in (False, True):
        opts = ["--capacity", "1"] + (["--reroute"] if reroute else [])
        _, lg, rs = m.logits(*opts, routes=True)
        want = emulate_capacity(r0[l0], E, 1.0, reroute)
        got = {t: sorted(rs[l0][t][0]) for t in rs[l0]}
        bad = sum(got[t] != sorted(want[t]) for t in got)
        expect(bad == 0, f"{name}: {' '.join(opts)}: {bad} tokens differ from the rule", failures)
        C = math.ceil(npos * (2 if own_count else k) / E)   # every layer: a fixed count per token before capacity
        for l in rs:
            load = defaultdict(int)
            for ex, _, _ in rs[l].values():
                for e in ex:
                    load[e] += 1
            expect(max(load.values()) <= C, f"{name}: {' '.join(opts)}: layer {l} expert load {max(load.values())} over {C}",
                   failures)

    # 8. experts per token as eval reports it; LExI's average
    tf = os.path.join(m.work, f"{name}.dyn.tokens")
    open(tf, "w").write(m.toks.replace(",", " "))
    ev = json.loads(run([m.moe, "eval", m.d, "--tokens-file", tf, "--json"]).stdout)
    expect(abs(ev["experts_per_token"] - k) < 1e-9, f"{name}: eval reports {ev['experts_per_token']} experts per token, k = {k}", failures)
    ev = json.loads(run([m.moe, "eval", m.d, "--tokens-file", tf, "--json", "--top-p", str(P)]).stdout)   # the last P tried
    expect(ev["experts_per_token"] == np.mean(counts) or abs(ev["experts_per_token"] - np.mean(counts)) < 1e-6,
           f"{name}: eval --top-p {P} reports {ev['experts_per_token']} experts per token, routes {np.mean(counts)}", failures)
    nmoe = len(layers)
    for K in (1, 1.5):
        ev = json.loads(run([m.moe, "eval", m.d, "--tokens-file", tf, "--json", "--layer-k", f"auto:{K}"]).stdout)
        want = round(K * nmoe) / nmoe
        expect(abs(ev["experts_per_token"] - want) < 1e-9,
               f"{name}: --layer-k auto:{K} ran {ev['experts_per_token']} experts per token, want {want}", failures)

    # 9. bad values: usage errors on one line, exit 1
    for opts in (["--top-p", "0"], ["--top-p", "1.01"], ["--top-p", "nan"], ["--top-p", "x"], ["--skip-threshold", "-1"],
                 ["--layer-k", "1"], ["--layer-k", f"{l0}:0"], ["--layer-k", f"{l0}:{E + 1}"], ["--layer-k", "999:1"],
                 ["--layer-k", "auto:0"], ["--layer-k", "auto:x"], ["--disable-experts", f"{l0}:{E}"],
                 ["--disable-experts", f"{l0}:"], ["--disable-experts", ""], ["--disable-experts", f"{l0}:1,"],
                 ["--disable-experts", f"x:1"], ["--force-experts", f"{l0}:-1"], ["--capacity", "0"], ["--reroute"],
                 ["--disable-experts", ",".join(f"{l0}:{e}" for e in range(E))],
                 ["--disable-experts", f"{l0}:1", "--force-experts", f"{l0}:1"]):
        p = run([m.moe, "logits", m.d, "--tokens", m.toks, *opts], check=False)
        lines = p.stderr.strip().splitlines()
        expect(p.returncode == 1 and len(lines) == 1 and not p.stdout,
               f"{name}: {opts} gave exit {p.returncode}, stderr {p.stderr.strip()[:200]!r}", failures)


def scale_free_scores(name):
    """Sigmoid routers: an expert's score does not depend on the others'."""
    return "deepseek_v3" in name or "glm4" in name or "minimax" in name


def check_top_p(m, P, E, kcap, norm, scale):
    """Decisions of --top-p P that differ from the rule, and the experts per token."""
    _, lg, rs = m.logits("--top-p", str(P), routes=True)
    bad = 0
    counts = []
    for l in rs:
        for t, (ex, w, sc) in rs[l].items():
            sc = np.array(sc, dtype=np.float64)
            order = sorted(range(E), key=lambda e: (-np.float32(sc[e]), e))
            total, cum, want = float(sc.sum()), 0.0, []
            for e in order:
                if len(want) >= kcap or (want and cum >= P * total - 1e-7 * total):
                    break
                want.append(e)
                cum += sc[e]
            s = sum(sc[e] for e in want)
            ww = [scale * (sc[e] / s if norm else sc[e]) for e in want]
            counts.append(len(ex))
            if sorted(ex) != sorted(want) or any(abs(a - dict(zip(want, ww))[e]) > 1e-5 * max(1, abs(a)) for e, a in zip(ex, w) if e in want):
                bad += 1

    return bad, counts


def emulate_capacity(r, E, gamma, reroute):
    """One layer's decision {pos: (experts, weights, scores)} under capacity: expected experts per pos."""
    items = [(t, e, w) for t in sorted(r) for e, w in zip(r[t][0], r[t][1])]
    C = max(1, math.ceil(gamma * len(items) / E))
    by_e = defaultdict(list)
    for i, (t, e, w) in enumerate(items):
        by_e[e].append(i)
    keep = [False] * len(items)
    fill = defaultdict(int)
    for e, idx in by_e.items():
        idx = sorted(idx, key=lambda i: (-np.float32(items[i][2]), i))
        for rank, i in enumerate(idx):
            keep[i] = rank < C
        fill[e] = min(len(idx), C)
    out = defaultdict(list)
    for i, (t, e, w) in enumerate(items):
        if keep[i]:
            out[t].append(e)
    for i, (t, e, w) in enumerate(items):
        if keep[i] or not reroute:
            continue
        sc = r[t][2]
        for c in sorted(range(E), key=lambda x: (-np.float32(sc[x]), x)):
            if fill[c] >= C or not sc[c] > 0 or c in r[t][0] or c in out[t]:
                continue
            fill[c] += 1
            out[t].append(c)
            break
    return {t: out[t] for t in r}
