"""Expert parallelism: measure it on this machine and model it for real clusters; writes docs/SCALE.md.

Measured (`mpirun -np R moe generate MODEL --stats`, R = 1, 2, 4, with the weights mapped and with
--no-mmap): per rank, the bytes each step of the exchange sent per token and MoE layer (counted in
src/moe/moe_layer_ep.c), the time split between dispatch, the rank's experts, combine and gather, and
the resident memory (VmRSS, VmHWM). Logits are checked identical to one process at every R.

Modelled: the same exchange for a DeepSeek-V3-sized model (d = 7168, 58 MoE layers of 256 routed
experts, top-8, one shared expert) on 8 to 64 nodes, one rank per node, with the formulas printed in
the report and two link speeds.

usage: python3 bench/ep_scale.py --moe build/moe [--model DIR] [--prompt-tokens 64] [--decode 16]
       [--out docs/SCALE.md]
The default model is the bench model bench/make_random_model.py mixtral2g (made if missing in
~/.cache/moe-bench/mixtral2g)."""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, env=None, timeout=1800):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"ep_scale: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def mpi_env():
    env = dict(os.environ)
    if os.getuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
    return env


def run(moe, model, R, toks, decode, no_mmap, threads):
    args = [moe, "generate", model, "--tokens", ",".join(map(str, toks)), "-n", str(decode), "--stats",
            "-t", str(threads)] + (["--no-mmap"] if no_mmap else [])
    cmd = args if R == 1 else ["mpirun", "--oversubscribe", "-np", str(R)] + args
    t0 = time.time()
    r = sh(cmd, env=mpi_env())
    wall = time.time() - t0
    phases, ep = [], []
    for line in r.stderr.splitlines():
        if line.startswith("stats-json "):
            phases.append(json.loads(line[len("stats-json "):]))
        elif line.startswith("stats-ep-json "):
            ep.append(json.loads(line[len("stats-ep-json "):]))
    return dict(out=r.stdout.strip(), phases=phases, ep=ep, wall=wall)


def logits(moe, model, R, toks):
    args = [moe, "logits", model, "--tokens", ",".join(map(str, toks)), "-t", "1"]
    cmd = args if R == 1 else ["mpirun", "--oversubscribe", "-np", str(R)] + args
    return sh(cmd, env=mpi_env()).stdout


def model_cfg(model):
    c = json.load(open(os.path.join(model, "config.json")))
    E = c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts")
    return c["hidden_size"], c["num_hidden_layers"], E, c["num_experts_per_tok"]


def expected_remote_ranks(R, k):
    """Distinct other ranks among the owners of k distinct experts drawn uniformly (experts spread
    evenly over R ranks): (R - 1) (1 - (1 - 1/R)^k), the sampling-with-replacement approximation."""
    return (R - 1) * (1 - (1 - 1 / R) ** k)


def cluster_model():
    """DeepSeek-V3 sizes; bytes per token and MoE layer sent by the token's owner, per step."""
    d, L_moe, E, k = 7168, 58, 256, 8
    rows = []
    for bw_name, bw in (("100 Gb/s Ethernet (12.5 GB/s)", 12.5e9), ("400 Gb/s InfiniBand NDR (50 GB/s)", 50e9)):
        for R in (8, 16, 32, 64):
            for b, bname in ((4, "f32 (moe today)"), (2, "bf16")):
                disp = expected_remote_ranks(R, k) * d * b
                comb = k * (R - 1) / R * d * b
                gath = (R - 1) * d * b
                for n in (1, 64, 4096):
                    # per MoE layer a rank owns n/R tokens; it sends disp+comb for each, and its gather part
                    # to R-1 ranks; every rank does the same at once, so a rank's link carries
                    # n/R (disp + comb + gath) bytes out (and as much in).
                    per_rank = n / R * (disp + comb + gath)
                    t_layer = per_rank / bw + 3 * (R - 1) * 2e-6   # + latency: 3 collectives, ~2 us per peer
                    rows.append(dict(link=bw_name, R=R, dtype=bname, n=n, disp=disp, comb=comb, gath=gath,
                                     per_rank=per_rank, t_layer=t_layer, t_model=t_layer * L_moe))
    return dict(d=d, L=L_moe, E=E, k=k, rows=rows)


def mib(x):
    return x / 1048576


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", required=True)
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/moe-bench/mixtral2g"))
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "docs", "SCALE.md"))
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.model, "config.json")):
        sh([sys.executable, os.path.join(HERE, "make_random_model.py"), "mixtral2g", a.model])
    d, L, E, k = model_cfg(a.model)
    toks = [(i * 7919 + 13) % 30000 + 100 for i in range(a.prompt_tokens)]
    ranks = (1, 2, 4)
    # identical logits first (a shorter prompt keeps the JSON small)
    ref = logits(a.moe, a.model, 1, toks[:16])
    same = {R: logits(a.moe, a.model, R, toks[:16]) == ref for R in ranks[1:]}
    res = {}
    for no_mmap in (False, True):
        for R in ranks:
            res[(R, no_mmap)] = run(a.moe, a.model, R, toks, a.decode, no_mmap, a.threads)
            print(f"R={R} no_mmap={no_mmap}: {res[(R, no_mmap)]['wall']:.1f} s", file=sys.stderr)
    gen_same = all(res[(R, m)]["out"] == res[(1, False)]["out"] for R in ranks for m in (False, True))
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mpiv = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    out = []
    w = out.append
    w("# Expert parallelism: measured traffic and memory, and a model for clusters\n")
    w(f"Generated by `python3 bench/ep_scale.py --moe build/moe` on {time.strftime('%Y-%m-%d')}: {cpu}, "
      f"{os.cpu_count()} cores, Linux {platform.release()}, {mpiv}. Every rank of a run shares these cores "
      f"(`--oversubscribe`, `-t {a.threads}`), so times here show the split of the work, not cluster speed.\n")
    w("`mpirun -np R moe logits|generate|run|eval MODEL ...` places each MoE layer's routed experts on R ranks "
      "(round robin, or `--ep-placement TRACE` balanced by a `moe trace`); everything else is replicated. "
      "Per MoE layer each rank owns a contiguous block of the tokens, sends each of its token rows once to "
      "every other rank owning one of the token's experts (dispatch, `MPI_Alltoallv`), runs its experts on "
      "the rows it received, sends every expert output row back to the token's owner (combine, "
      "`MPI_Alltoallv`), which adds them in ascending expert order as one process does, and the owners' "
      "finished rows go to every rank (`MPI_Allgatherv`) because the replicated attention needs all rows. "
      "Rows travel as float32. The counts below are the bytes each rank sent to *other* ranks, counted in "
      "`src/moe/moe_layer_ep.c` (`--stats` prints them per rank).\n")
    w(f"Model: `{a.model}` ({d} hidden, {L} layers, {E} experts, top-{k}, bf16); prompt {a.prompt_tokens} "
      f"tokens, then {a.decode} decoded.\n")
    w(f"Logits of a 16-token prompt identical (byte for byte) to one process: " +
      ", ".join(f"R={R}: {'yes' if same[R] else 'NO'}" for R in same) +
      f"; generated tokens identical at every R, mapped and --no-mmap: {'yes' if gen_same else 'NO'}.\n")
    w("## Communication per token and MoE layer (bytes sent by a rank, mean over ranks)\n")
    w("| R | phase | dispatch | combine | gather | total | one row (d x 4) | dispatch time | experts time | combine time | gather time |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for R in ranks[1:]:
        r = res[(R, False)]
        for ph in ("prefill", "decode"):
            per = [e for e in r["ep"] if e["phase"] == ph]
            if not per:
                continue
            tok = sum(e["tokens"] for e in per) / R
            f = lambda key: sum(e[key] for e in per) / R / max(tok, 1)
            t = lambda key: sum(e[key] for e in per) / R
            tot = f("dispatch_bytes") + f("combine_bytes") + f("gather_bytes")
            w(f"| {R} | {ph} | {f('dispatch_bytes'):.0f} B | {f('combine_bytes'):.0f} B | {f('gather_bytes'):.0f} B | "
              f"{tot:.0f} B | {d * 4} B | {t('t_dispatch') * 1e3:.1f} ms | {t('t_experts') * 1e3:.1f} ms | "
              f"{t('t_combine') * 1e3:.1f} ms | {t('t_gather') * 1e3:.1f} ms |")
    w("")
    w(f"Expected per token and layer, sent by the token's owner: dispatch (R-1)(1-(1-1/R)^k) x d x 4 B = "
      + ", ".join(f"R={R}: {expected_remote_ranks(R, k) * d * 4:.0f} B" for R in ranks[1:])
      + f"; combine k (R-1)/R x d x 4 B = " + ", ".join(f"R={R}: {k * (R - 1) / R * d * 4:.0f} B" for R in ranks[1:])
      + f"; gather (R-1) x d x 4 B = " + ", ".join(f"R={R}: {(R - 1) * d * 4:.0f} B" for R in ranks[1:])
      + ". The table divides by all tokens of the job (each rank owns 1/R of them), so it shows those "
      "numbers divided by R.\n")
    w("## Memory per rank (MiB, after decode; mean of the ranks)\n")
    w("| R | weights | VmRSS | VmHWM | expert rows run per rank (decode) |")
    w("|---|---|---|---|---|")
    for no_mmap in (False, True):
        for R in ranks:
            r = res[(R, no_mmap)]
            last = [p for p in r["phases"] if p["phase"] == "decode"]
            rss = sum(p["vm_rss"] for p in last) / max(len(last), 1)
            hwm = sum(p["vm_hwm"] for p in last) / max(len(last), 1)
            eps = [e for e in r["ep"] if e["phase"] == "decode"]
            rows = f"{sum(e['rows_run'] for e in eps) / R:.0f}" if eps else "all"
            w(f"| {R} | {'--no-mmap' if no_mmap else 'mapped'} | {mib(rss):.0f} | {mib(hwm):.0f} | {rows} |")
    w("")
    w("Mapped (the default), a rank never touches the pages of other ranks' experts, so both the resident "
      "set and its peak fall with R. With `--no-mmap` the whole file is read into memory at load, so the "
      "peak (VmHWM) still holds every expert once; the pages of other ranks' experts are then released "
      "(`madvise(MADV_DONTNEED)` in `src/model/ep_model.c`), so the resident memory while running falls "
      "with R. Reading only the rank's experts at load would lower that peak too (not done yet).\n")
    cm = cluster_model()
    w("## A model for clusters: DeepSeek-V3 size\n")
    w(f"d = {cm['d']}, {cm['L']} MoE layers, {cm['E']} routed experts, top-{cm['k']} (plus one shared expert, "
      "replicated), one rank per node, experts spread evenly. For a batch of n tokens per step, each rank owns "
      "n/R tokens and, per MoE layer, sends for each of them:\n")
    w("- dispatch: one row to every *other* rank owning one of its k experts: "
      "D = (R-1)(1-(1-1/R)^k) d b bytes (expected, experts uniform);")
    w("- combine: one row per expert on another rank: C = k (R-1)/R d b;")
    w("- gather: its finished row to every other rank (attention is replicated): G = (R-1) d b.")
    w("")
    w("A rank's link carries T = n/R (D + C + G) bytes out per layer (as much in), so a layer costs about "
      "T / B + 3 (R-1) x 2 us (three collectives; 2 us per peer is a typical small-message latency), and "
      f"the model {cm['L']} times that. b = 4 (float32 rows, what moe sends now) or 2 (bf16). The gather term "
      "grows with R and dominates: it is the price of replicated attention. Data-parallel attention "
      "(each rank attends only its own sequences, as DeepSeek's deployment does) would drop G and leave "
      "D + C, which stay below (k + min(k, R-1)) d b per token whatever R.\n")
    w("| link | R | rows | D | C | G | per rank per layer, n=1 | model per step n=1 | n=64 | n=4096 |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    by = {}
    for r in cm["rows"]:
        by.setdefault((r["link"], r["R"], r["dtype"]), {})[r["n"]] = r
    for (link, R, dt), v in by.items():
        r1 = v[1]
        w(f"| {link} | {R} | {dt} | {r1['disp'] / 1024:.0f} KiB | {r1['comb'] / 1024:.0f} KiB | {r1['gath'] / 1024:.0f} KiB | "
          f"{r1['per_rank'] / 1024:.1f} KiB | {v[1]['t_model'] * 1e3:.2f} ms | {v[64]['t_model'] * 1e3:.2f} ms | "
          f"{v[4096]['t_model'] * 1e3:.0f} ms |")
    w("")
    w("Memory: DeepSeek-V3's routed experts are about 654 B parameters (671 B in all); at FP8 (1 byte each) "
      "a node holds 654/R GB of experts plus the replicated 17 GB of the rest: 99 GB per node at R = 8, "
      "27 GB at R = 64.\n")
    w("## Raw measurements\n")
    w("```json")
    w(json.dumps({f"R={R} {'no-mmap' if m else 'mapped'}": {"wall_s": round(v["wall"], 2), "phases": v["phases"],
                                                           "ep": v["ep"]} for (R, m), v in res.items()}, indent=1))
    w("```")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, a.out)
    print(f"wrote {a.out}", file=sys.stderr)
    if not all(same.values()) or not gen_same:
        sys.exit("ep_scale: expert-parallel results differ from one process")


if __name__ == "__main__":
    main()
