#!/usr/bin/env bash
# Regenerate docs/SERVING.md: the load test of `moe serve` (bench/serve_load.py) at 1, 4, 16 and 64
# concurrent clients against one request at a time, on a random Mixtral-like model (bf16, made by
# bench/make_random_model.py PRESET with the Llama 2 tokenizer; default mixtral400m, 0.4 GB), plus
# `moe bench` on the same model as the engine's own single-sequence decode speed.
# Usage: bench/serve_bench.sh [PRESET]   (mixtral400m or mixtral2g)
# Environment: MOE_BIN (default build/moe), MOE_VENV (default ~/.cache/moe-venv), MOE_SHARED_DATA.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
moe=${MOE_BIN:-build/moe}
py=${MOE_VENV:-$HOME/.cache/moe-venv}/bin/python
shared=${MOE_SHARED_DATA:-$here/../shared/data}
[ -d "$shared" ] || shared=/work/shared/data
preset=${1:-mixtral400m}
out=out/serve-bench
model=$out/$preset
mkdir -p "$out"
[ -x "$moe" ] || { echo "serve_bench: build first (cmake --build build)"; exit 1; }
if [ ! -e "$model/model.safetensors" ]; then
  "$py" bench/make_random_model.py "$preset" "$model" --tokenizer "$shared/tokenizers/llama2" --seed 1 --dtype bf16
fi
serve_flags="--max-batch 64 --queue 64 --ctx 512 --no-mmap"
echo "serve_bench: moe bench (single sequence, --no-mmap)"
"$moe" bench "$model" -p 64 -n 32 --no-mmap --json >"$out/bench.json"
"$moe" info "$model" --json >"$out/info.json"
log="$out/serve.log"
"$moe" serve "$model" --port 0 $serve_flags 2>"$log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 600); do
  port=$(grep -o 'on http://127.0.0.1:[0-9]*' "$log" | cut -d: -f3 || true)
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.5
done
[ -n "$port" ] || { echo "serve_bench: the server did not start"; cat "$log"; exit 1; }
echo "serve_bench: load test on port $port"
rc=0
"$py" bench/serve_load.py --url "http://127.0.0.1:$port" --levels 1,4,16,64 --requests 16 --distinct 64 \
  --max-tokens 32 --prompts "$shared/tinyshakespeare.txt" --json "$out/load.json" || rc=$?
curl -s "http://127.0.0.1:$port/metrics" >"$out/metrics.txt" || true
kill -TERM $pid
wait $pid || true
trap - EXIT
"$py" bench/serve_report.py --load "$out/load.json" --bench "$out/bench.json" --info "$out/info.json" \
  --metrics "$out/metrics.txt" --flags "$serve_flags" --preset "$preset" --doc docs/SERVING.md
echo "serve_bench: wrote docs/SERVING.md (load test exit $rc)"
exit $rc
