#!/usr/bin/env bash
# Train a small mixture-of-experts model on tinyshakespeare and print text sampled from it: builds moe
# if needed, trains the tiny preset (4 layers, 8 experts top-2, 1.9 M parameters) for 800 steps of
# 2048 bytes (about 3 minutes on 2 cores), writes the checkpoint to OUT (default out/shakespeare),
# shows `moe info` of it, and generates 500 bytes after "ROMEO:" with `moe run` (the checkpoint has a
# byte-level tokenizer.json).
# Usage: scripts/train_demo.sh [OUT]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=${1:-out/shakespeare}
data=""
for d in "${MOE_SHARED_DATA:-}" "$here/../shared/data" /work/shared/data; do
  if [ -n "$d" ] && [ -f "$d/tinyshakespeare.txt" ]; then data="$d/tinyshakespeare.txt"; break; fi
done
[ -n "$data" ] || { echo "train_demo: tinyshakespeare.txt not found (set MOE_SHARED_DATA)"; exit 2; }
if [ ! -x build/moe ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
  cmake --build build -j"$(nproc)" --target moe_cli > /dev/null
fi
mkdir -p "$(dirname "$out")"
build/moe train --preset tiny --data "$data" --steps 800 --eval-every 200 --out "$out"
echo
build/moe info "$out"
echo
printf "ROMEO:"   # moe run prints only what it generates
build/moe run "$out" -p "ROMEO:" -n 500 --seed 1
