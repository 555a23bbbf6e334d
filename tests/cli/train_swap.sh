#!/usr/bin/env bash
# train_swap.sh - an output folder is replaced whole (issue 9 item 11):
#  1. a run of another shape saving into an existing --out is SIGKILLed at random moments; after each kill
#     the folder loads with `moe info` and `moe logits` and is the old model (its shape and the same
#     logits hash) or the new one (its shape, config.json, train.json and weights agreeing), never a mix;
#  2. leftovers of killed writers (staging folders, NAME.tmp.XXXXXX) are removed by the next run; a
#     user's own file (and subfolder) in the folder survives every save;
#  3. a second run on an --out that a first run holds is refused at once (exit 1, one line), also with
#     --resume, and by quantize; the lock goes with a killed holder;
#  4. the same as 1 for `moe quantize` writing over an output of another shape;
#  5. prune, merge and upcycle over an existing output: no file of the old model survives, the user's does.
# Usage: train_swap.sh MOE_BINARY SCRATCH_DIR
set -uo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
data=$work/data.txt
for i in $(seq 1 200); do echo "Verse $i: shall I compare thee to a summer's day? Thou art more lovely and more temperate."; done > "$data"
out=$work/ckpt
fail() { echo "FAIL: $*"; exit 1; }
common=(--data "$data" --eval-every 0 --quiet -t 1 --seq-len 32 --batch 2 --heads 2)
small=("${common[@]}" --d-model 32 --layers 1 --d-ff 64 --experts 2 --top-k 1 --d-expert 16 --steps 2)
big=("${common[@]}" --d-model 96 --layers 3 --d-ff 192 --experts 8 --top-k 2 --d-expert 96 --steps 100000 --save-every 1)
ids=84,104,101,32,115
hidden() { grep -o '"hidden_size":[[:space:]]*[0-9]*' "$1/config.json" | grep -o '[0-9]*$'; }
tdmodel() { grep -o '"d_model":[[:space:]]*[0-9]*' "$1/train.json" | grep -o '[0-9]*$'; }
lhash() { "$moe" logits "$1" --tokens $ids -t 1 2> "$work/err.txt" | sha256sum | cut -c1-16; }

# --- 1. training of another shape killed while it saves over a finished small run
"$moe" train "${small[@]}" --out "$out" || fail "the small run failed"
echo "my notes" > "$out/notes.txt"
h_small=$(lhash "$out"); [ -n "$h_small" ] || fail "no logits for the small model"
RANDOM=$$
old=0; new=0
for round in $(seq 1 12); do
  if [ "$(hidden "$out")" != 32 ]; then
    "$moe" train "${small[@]}" --out "$out" || fail "round $round: restoring the small run failed"
    [ "$(lhash "$out")" = "$h_small" ] || fail "round $round: the small run is not deterministic"
  fi
  "$moe" train "${big[@]}" --out "$out" & pid=$!
  sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
  "$moe" info "$out" > "$work/info.txt" 2> "$work/err.txt" || fail "round $round: moe info failed: $(cat "$work/err.txt")"
  h=$(hidden "$out"); d=$(tdmodel "$out")
  [ "$h" = "$d" ] || fail "round $round: config.json says hidden_size $h but train.json d_model $d (a mix)"
  lh=$(lhash "$out")
  grep -q . "$work/err.txt" && fail "round $round: moe logits: $(cat "$work/err.txt")"
  case $h in
    32) [ "$lh" = "$h_small" ] || fail "round $round: the old shape with other logits (a mix)"; old=$((old + 1)) ;;
    96) new=$((new + 1)) ;;
    *) fail "round $round: hidden_size $h" ;;
  esac
  [ "$(cat "$out/notes.txt" 2>/dev/null)" = "my notes" ] || fail "round $round: notes.txt was lost"
done
echo "training: $old kills left the old model, $new the new one"

# --- 2. leftovers of killed writers are removed by the next run; a folder of the user's own survives
mkdir -p "$work/.ckpt.moe-staging-abcdef"; echo x > "$work/.ckpt.moe-staging-abcdef/config.json"
echo x > "$out/model.safetensors.tmp.Ab12Cd"
"$moe" train "${small[@]}" --out "$out" || fail "training after leftovers failed"
[ ! -e "$work/.ckpt.moe-staging-abcdef" ] || fail "a leftover staging folder was not removed"
[ ! -e "$out/model.safetensors.tmp.Ab12Cd" ] || fail "a leftover temporary file was not removed"
ls -a "$work" | grep -q 'moe-staging' && fail "staging folders left behind: $(ls -a "$work")"
[ "$(lhash "$out")" = "$h_small" ] || fail "the small run after cleanup differs"
mkdir "$out/plots"; echo p > "$out/plots/a.txt"
"$moe" train "${small[@]}" --out "$out" 2> "$work/err.txt" || fail "training with a subfolder in --out failed: $(cat "$work/err.txt")"
grep -q "config.json last" "$work/err.txt" || true   # quiet: no note expected
[ -f "$out/plots/a.txt" ] || fail "the user's subfolder was lost"
"$moe" info "$out" > /dev/null || fail "the in-place checkpoint does not load"
rm -rf "$out/plots"
model_a=$work/model_a
cp -r "$out" "$model_a"

# --- 3. one writer at a time
"$moe" train "${big[@]}" --save-every 0 --out "$out" & pid=$!
real_out=$(realpath "$out")
for i in $(seq 1 200); do   # until the first run holds the lock: an open descriptor of the folder
  sleep 0.05
  ls -l /proc/$pid/fd 2>/dev/null | grep -q -- "-> $real_out\$" && break
done
ls -l /proc/$pid/fd 2>/dev/null | grep -q -- "-> $real_out\$" || fail "the first run never opened its --out"
for args in "${small[*]}" "--data $data --out $out --resume --quiet"; do
  start=$(date +%s)
  # shellcheck disable=SC2086
  timeout 30 "$moe" train $args --out "$out" > /dev/null 2> "$work/err.txt"; rc=$?
  [ $rc = 1 ] || fail "a second run on a locked --out exited $rc (want 1): $(cat "$work/err.txt")"
  grep -q "another moe process is writing" "$work/err.txt" || fail "no lock message: $(cat "$work/err.txt")"
  [ "$(wc -l < "$work/err.txt")" = 1 ] || fail "more than one line: $(cat "$work/err.txt")"
  [ $(( $(date +%s) - start )) -le 5 ] || fail "the refusal was not immediate"
done
timeout 30 "$moe" quantize "$model_a" "$out" --type q8_0 -t 1 > /dev/null 2> "$work/err.txt"; rc=$?
[ $rc = 1 ] && grep -q "another moe process is writing" "$work/err.txt" ||
  fail "quantize into a locked folder: exit $rc: $(cat "$work/err.txt")"
kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
"$moe" train "${small[@]}" --out "$out" 2> "$work/err.txt" || fail "the lock outlived its killed holder: $(cat "$work/err.txt")"

# --- 4. quantize and upcycle over an output of another shape, killed at random
model_b=$work/model_b
"$moe" train "${big[@]}" --steps 2 --save-every 0 --out "$model_b" || fail "the big model failed"
q=$work/q
"$moe" quantize "$model_a" "$q" --type q8_0 -t 1 2> /dev/null || fail "quantize failed"
h_qa=$(lhash "$q")
qold=0; qnew=0
for round in $(seq 1 8); do
  if [ "$(hidden "$q")" != 32 ]; then "$moe" quantize "$model_a" "$q" --type q8_0 -t 1 2> /dev/null || fail "requantize failed"; fi
  "$moe" quantize "$model_b" "$q" --type q4 -t 1 2> /dev/null & pid=$!
  sleep "$(printf "0.%02d" $((RANDOM % 14)))"
  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
  "$moe" info "$q" > /dev/null 2> "$work/err.txt" || fail "quantize round $round: moe info failed: $(cat "$work/err.txt")"
  lh=$(lhash "$q")
  grep -q . "$work/err.txt" && fail "quantize round $round: moe logits: $(cat "$work/err.txt")"
  case $(hidden "$q") in
    32) [ "$lh" = "$h_qa" ] || fail "quantize round $round: the old shape with other logits"; qold=$((qold + 1)) ;;
    96) qnew=$((qnew + 1)) ;;
    *) fail "quantize round $round: unexpected shape" ;;
  esac
done
ls -a "$work" | grep -q '\.q\.moe-staging' && "$moe" quantize "$model_a" "$q" --type q8_0 -t 1 2> /dev/null
ls -a "$work" | grep -q '\.q\.moe-staging' && fail "quantize left staging folders"
echo "quantize: $qold kills left the old model, $qnew the new one"
# --- 5. prune, merge and upcycle over an existing output: the old model's files do not survive (a stale
# shard, the quantized weights), the user's file does, and the result loads
echo "mine" > "$q/notes.txt"; echo stale > "$q/model-00001-of-00002.safetensors"
"$moe" prune "$model_b" "$q" --method freq --keep 4 --calib "$data" -t 1 > /dev/null 2> "$work/err.txt" || fail "prune over an output: $(cat "$work/err.txt")"
"$moe" info "$q" > "$work/info.txt" 2> "$work/err.txt" || fail "the pruned folder does not load: $(cat "$work/err.txt")"
grep -q '"num_experts":[[:space:]]*4' "$q/config.json" || fail "the pruned config does not have 4 experts"
[ -e "$q/model-00001-of-00002.safetensors" ] && fail "a stale shard survived prune"
[ "$(cat "$q/notes.txt")" = mine ] || fail "prune lost the user's file"
"$moe" merge "$model_b" "$q" --method msmoe --groups 2 --calib "$data" -t 1 > /dev/null 2> "$work/err.txt" || fail "merge over an output: $(cat "$work/err.txt")"
"$moe" info "$q" > /dev/null 2> "$work/err.txt" || fail "the merged folder does not load: $(cat "$work/err.txt")"
[ -e "$q/moe_compression.json" ] || fail "merge wrote no report"
dense=$work/dense
"$moe" train "${common[@]}" --d-model 32 --layers 1 --d-ff 64 --experts 0 --qk-norm 1 --steps 2 --tokenizer "$model_a/tokenizer.json" --vocab 300 --out "$dense" || fail "the dense model failed"
"$moe" upcycle "$dense" "$q" --experts 4 --top-k 2 > /dev/null 2> "$work/err.txt" || fail "upcycle over an output: $(cat "$work/err.txt")"
"$moe" info "$q" > /dev/null 2> "$work/err.txt" || fail "the upcycled folder does not load: $(cat "$work/err.txt")"
[ -e "$q/moe_compression.json" ] && fail "the merge report survived upcycle"
grep -q "\"tokenizer\":[[:space:]]*\"$(realpath "$q")/tokenizer.json\"" "$q/train.json" ||
  fail "upcycle's train.json does not name its tokenizer at the final place: $(grep tokenizer "$q/train.json")"
[ "$(cat "$q/notes.txt")" = mine ] || fail "merge or upcycle lost the user's file"
ls -a "$work" | grep -q 'moe-staging' && fail "staging folders left behind: $(ls -a "$work")"
echo "ok"
