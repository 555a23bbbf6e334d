#!/usr/bin/env bash
# train_resume.sh - determinism and resume of `moe train`:
#  1. the same seed gives identical per-step losses, on 1 thread and on 2;
#  2. a run stopped at step 6 and continued with --resume gives, for steps 7..12, exactly the losses
#     and held-out losses of the uninterrupted run, and a byte-identical final model.safetensors;
#  3. a different seed gives different losses (the check above could not pass by accident);
#  4. saving again leaves unchanged files (tokenizer.json) alone and replaces the weights.
# Usage: train_resume.sh MOE_BINARY SCRATCH_DIR
set -euo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
data=$work/data.txt
for i in $(seq 1 60); do echo "Line $i: the quick brown fox jumps over the lazy dog, again and again and again."; done > "$data"
common=(--data "$data" --d-model 32 --layers 2 --heads 4 --kv-heads 2 --seq-len 32 --d-ff 64 --experts 4 --top-k 2
        --d-expert 16 --shared 1 --dense-layers 1 --batch 4 --steps 12 --warmup 3 --eval-every 3 --eval-batches 2
        --lr 5e-3 --json --quiet)
losses() { sed 's/, "tok_per_s": [0-9.]*//' "$1"; }
fail() { echo "FAIL: $*"; exit 1; }

for router in softmax_topk deepseek_v3 thor; do
  "$moe" train "${common[@]}" --router "$router" --seed 5 -t 1 --out "$work/full_$router" > "$work/a.json"
  "$moe" train "${common[@]}" --router "$router" --seed 5 -t 2 > "$work/b.json"
  [ "$(wc -l < "$work/a.json")" = 12 ] || fail "$router: expected 12 JSON lines"
  cmp -s <(losses "$work/a.json") <(losses "$work/b.json") || fail "$router: same seed, different losses on 1 and 2 threads"
  "$moe" train "${common[@]}" --router "$router" --seed 6 -t 1 > "$work/c.json"
  cmp -s <(losses "$work/a.json") <(losses "$work/c.json") && fail "$router: seeds 5 and 6 gave the same losses"

  out=$work/resumed_$router
  "$moe" train "${common[@]}" --router "$router" --seed 5 -t 2 --out "$out" --save-every 6 --stop-after 6 > "$work/r1.json"
  [ -f "$out/train_state.bin" ] || fail "$router: no train_state.bin after --stop-after 6"
  ino_tok=$(stat -c %i "$out/tokenizer.json"); ino_model=$(stat -c %i "$out/model.safetensors")
  "$moe" train --data "$data" --out "$out" --resume --json --quiet -t 1 > "$work/r2.json"
  # files that do not change between saves are left alone; the weights are replaced (a new file)
  [ "$(stat -c %i "$out/tokenizer.json")" = "$ino_tok" ] || fail "$router: an unchanged tokenizer.json was rewritten"
  [ "$(stat -c %i "$out/model.safetensors")" != "$ino_model" ] || fail "$router: model.safetensors was not rewritten"
  cat "$work/r1.json" "$work/r2.json" > "$work/r.json"
  cmp -s <(losses "$work/a.json") <(losses "$work/r.json") || {
    diff <(losses "$work/a.json") <(losses "$work/r.json") | head -5; fail "$router: resumed run differs from the uninterrupted one"; }
  cmp -s "$work/full_$router/model.safetensors" "$out/model.safetensors" || fail "$router: final weights differ after resume"
  echo "ok $router: deterministic on 1 and 2 threads, resume bit-identical"
done

# resuming a folder without a training state is an input error (exit 2) naming the file
if "$moe" train --data "$data" --out "$work/none" --resume --quiet 2> "$work/err.txt"; then fail "resume without state succeeded"; fi
grep -q "train.json" "$work/err.txt" || fail "resume error does not name the file: $(cat "$work/err.txt")"
echo "all resume checks passed"
