#!/bin/sh
# Train the offload benchmark's model with `moe train` and write the held-out tokens beside it.
#
#   bench/train_offload_model.sh OUT [MOE] [DATA] [extra moe train options...]
#
# A qwen3_moe-layout model (softmax top-k router) on tinyshakespeare, byte tokens: 6 layers, d-model 256,
# 4 heads / 2 kv heads of width 64, 32 experts top-2 of width 384 (58 M parameters, 4.9 M active),
# 600 steps of 8 x 128 tokens, fixed seed. moe train writes f32, so the routed experts take 216 MiB on
# disk. About 12 minutes on one core of the development VM. Random weights route almost uniformly and
# would flatter no cache; trained routers have the stable, layer-to-layer predictable patterns that
# caching and prefetch rely on.
#
# Writes OUT/ (config.json, model.safetensors, tokenizer, train.json, train_state.bin), OUT/train.log
# (progress) and OUT/test_tokens.txt: the held-out split moe train evaluated on (its last
# --val-fraction, default 0.1, of the file's bytes), as space-separated byte ids, which
# bench/offload_bench.py decodes over and bench/quant_ppl.py scores.
set -eu
out=${1:?usage: train_offload_model.sh OUT [MOE] [DATA] [moe train options]}
moe=${2:-build/moe}
data=${3:-${MOE_SHARED_DATA:-/work/shared/data}/tinyshakespeare.txt}
[ $# -gt 3 ] && shift 3 || shift $#
mkdir -p "$out"
# -t 1: on a shared 2-core machine a second thread does not help (see docs/TRAINING.md, Speed).
"$moe" train --data "$data" --out "$out" \
    --d-model 256 --layers 6 --heads 4 --kv-heads 2 --head-dim 64 \
    --experts 32 --top-k 2 --d-expert 384 --router softmax_topk --layout qwen3_moe \
    --seq-len 128 --batch 8 --steps 600 --lr 3e-3 --min-lr 3e-4 \
    --eval-every 100 --eval-batches 8 --save-every 0 --log-every 25 --seed 1 -t 1 "$@" \
    2> "$out/train.log"
tail -n 1 "$out/train.log"
# The held-out split exactly as src/train/data.c cuts it: n_train = (size_t)(len * (1.0 - val_fraction)).
python3 - "$data" "$out" <<'EOF'
import json, os, sys
data, out = sys.argv[1], sys.argv[2]
vf = json.load(open(os.path.join(out, "train.json")))["val_fraction"]
raw = open(data, "rb").read()
n_train = int(len(raw) * (1.0 - vf))
open(os.path.join(out, "test_tokens.txt"), "w").write(" ".join(map(str, raw[n_train:])))
print(f"{out}/test_tokens.txt: {len(raw) - n_train} held-out byte ids (bytes {n_train}..{len(raw)} of {data})")
EOF
