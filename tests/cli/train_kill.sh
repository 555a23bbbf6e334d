#!/usr/bin/env bash
# train_kill.sh - checkpoints survive SIGKILL: training that saves after every step is killed at
# random moments, eight times (or more on a busy machine); each time the last checkpoint must load with `moe info` and
# `moe logits`, and --resume must continue from it to the end.
# Usage: train_kill.sh MOE_BINARY SCRATCH_DIR
set -uo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
data=$work/data.txt
for i in $(seq 1 200); do echo "Verse $i: shall I compare thee to a summer's day? Thou art more lovely and more temperate."; done > "$data"
out=$work/ckpt
args=(--data "$data" --out "$out" --d-model 48 --layers 2 --heads 4 --seq-len 64 --d-ff 96 --experts 4 --top-k 2
      --d-expert 32 --batch 4 --steps 100000 --save-every 1 --eval-every 0 --quiet -t 1)
fail() { echo "FAIL: $*"; exit 1; }
RANDOM=$$
loaded=0
rounds=0
# eight kills, plus up to eight more (with longer waits) if a busy machine kept training from saving
while [ $rounds -lt 8 ] || { [ $loaded -lt 4 ] && [ $rounds -lt 16 ]; }; do
  rounds=$((rounds + 1)); round=$rounds
  if [ -f "$out/train_state.bin" ]; then "$moe" train --data "$data" --out "$out" --resume --quiet -t 1 & pid=$!
  else "$moe" train "${args[@]}" & pid=$!; fi
  if [ $round -le 8 ]; then sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"; else sleep "1.$((RANDOM % 10))"; fi
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -f "$out/model.safetensors" ]; then
    "$moe" info "$out" > "$work/info.txt" 2> "$work/err.txt" || fail "round $round: moe info failed: $(cat "$work/err.txt")"
    "$moe" logits "$out" --tokens 84,104,101,32 > "$work/logits.json" 2> "$work/err.txt" ||
      fail "round $round: moe logits failed: $(cat "$work/err.txt")"
    grep -q '"logits"' "$work/logits.json" || fail "round $round: no logits"
    loaded=$((loaded + 1))
  fi
done
[ "$loaded" -ge 4 ] || fail "only $loaded of $rounds kills left a checkpoint to load (training too slow to start?)"
# the surviving state resumes and finishes three more steps
[ -f "$out/train_state.bin" ] || fail "no training state survived"
step=$(od -An -t d8 -j 16 -N 8 "$out/train_state.bin" | tr -d ' ')
"$moe" train --data "$data" --out "$out" --resume --steps $((step + 3)) --quiet -t 1 2> "$work/err.txt" ||
  fail "resume from step $step failed: $(cat "$work/err.txt")"
"$moe" info "$out" > /dev/null || fail "final checkpoint does not load"
[ "$(od -An -t d8 -j 16 -N 8 "$out/train_state.bin" | tr -d ' ')" = $((step + 3)) ] || fail "resume did not reach step $((step + 3))"
if ls "$out" | grep -q '\.tmp\.'; then fail "temporary files of killed writes were not cleaned: $(ls "$out")"; fi
echo "ok: $loaded of $rounds kills left a loadable checkpoint; resumed from step $step to $((step + 3))"
