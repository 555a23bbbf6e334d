#!/usr/bin/env bash
# Set up, build, make a small random Qwen3-MoE model with transformers' own model class, show what moe
# knows about it, its logits and a greedy continuation (the tokens are meaningless; the numbers are
# exactly what transformers computes for the same weights).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/build.sh
venv=${MOE_VENV:-$HOME/.cache/moe-venv}
model=build/demo-model
[ -f "$model/model.safetensors" ] || "$venv/bin/python" bench/make_random_model.py tiny "$model"
echo; echo "== moe info $model"; build/moe info "$model"
echo; echo "== moe logits (first 8 of 512 logits at each of 4 positions)"
build/moe logits "$model" --tokens 1,2,3,4 | "$venv/bin/python" -c 'import json,sys; [print(" ".join(f"{v:8.4f}" for v in r[:8])) for r in json.load(sys.stdin)["logits"]]'
echo; echo "== moe generate: 16 greedy tokens after 1,2,3,4"
build/moe generate "$model" --tokens 1,2,3,4 -n 16
