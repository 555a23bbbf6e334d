#!/usr/bin/env bash
# train_cli.sh - `moe train` and `moe upcycle` on bad input: every mistake ends with one clear line
# and exit code 1 (usage) or 2 (bad input), never a crash. Also --help and a config file.
# Usage: train_cli.sh MOE_BINARY SCRATCH_DIR
set -uo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
data=$work/data.txt
for i in $(seq 1 30); do echo "All the world's a stage, and all the men and women merely players $i."; done > "$data"
tiny=(--d-model 16 --layers 1 --heads 2 --seq-len 16 --d-ff 16 --experts 2 --top-k 1 --d-expert 8 --batch 2 --steps 2 -q -t 1)

expect() {   # expect CODE PATTERN -- command...
  local code=$1 pat=$2; shift 3
  "$@" > "$work/out.txt" 2> "$work/err.txt"
  local got=$?
  [ "$got" = "$code" ] || fail "'$*' exited $got, expected $code: $(cat "$work/err.txt")"
  grep -q -- "$pat" "$work/err.txt" || fail "'$*': message lacks '$pat': $(cat "$work/err.txt")"
  [ "$(wc -l < "$work/err.txt")" -le 2 ] || fail "'$*': more than one message line: $(cat "$work/err.txt")"
}

"$moe" train --help > "$work/help.txt" || fail "--help exited non-zero"
grep -q -- "--router" "$work/help.txt" || fail "--help does not list --router"
expect 1 "data is required" -- "$moe" train "${tiny[@]}"
expect 1 "unknown option" -- "$moe" train --data "$data" --bogus 3
expect 1 "not a trainable router" -- "$moe" train --data "$data" --router nonsense "${tiny[@]}"
expect 1 "not a trainable router" -- "$moe" train --data "$data" --router deepseek_v2 "${tiny[@]}"
grep -q "deepseek_v2," "$work/err.txt" && fail "the refusal of deepseek_v2 lists it as trainable: $(cat "$work/err.txt")"
expect 1 "outside \[0, 0.999999999\]" -- "$moe" train --data "$data" "${tiny[@]}" --beta2 1
# the mixtral layout always renormalises the chosen experts' weights: --norm-topk 0 cannot be saved in it
expect 1 "always renormalises" -- "$moe" train --data "$data" "${tiny[@]}" --layout mixtral --qk-norm 0 --norm-topk 0
expect 1 "always renormalises" -- "$moe" train --data "$data" "${tiny[@]}" --qk-norm 0 --norm-topk 0
expect 1 "unknown preset" -- "$moe" train --data "$data" --preset huge
expect 1 "top-k 3 exceeds experts 2" -- "$moe" train --data "$data" "${tiny[@]}" --top-k 3
expect 1 "not divisible" -- "$moe" train --data "$data" "${tiny[@]}" --d-model 15
expect 1 "outside" -- "$moe" train --data "$data" "${tiny[@]}" --lr -1
expect 1 "not a number" -- "$moe" train --data "$data" "${tiny[@]}" --lr fast
expect 1 "layout mixtral" -- "$moe" train --data "$data" "${tiny[@]}" --layout mixtral
expect 2 "cannot open" -- "$moe" train --data "$work/missing.txt" "${tiny[@]}"
printf 'tiny' > "$work/short.txt"
expect 2 "too few" -- "$moe" train --data "$work/short.txt" "${tiny[@]}"
echo '{"d_model": 16, "layers": 1, "wings": 2}' > "$work/bad.json"
expect 2 "unknown key \"wings\"" -- "$moe" train --data "$data" --config "$work/bad.json" "${tiny[@]}"
echo '{"d_model": "big"}' > "$work/bad2.json"
expect 2 "must be a number" -- "$moe" train --data "$data" --config "$work/bad2.json" "${tiny[@]}"
echo '{"d_model": 16,' > "$work/bad3.json"
expect 2 "bad3.json" -- "$moe" train --data "$data" --config "$work/bad3.json" "${tiny[@]}"
expect 1 "needs --out" -- "$moe" train --data "$data" --resume
mkdir -p "$work/emptyckpt"
expect 2 "train.json" -- "$moe" train --data "$data" --out "$work/emptyckpt" --resume
# a config file sets options; flags override it
echo '{"d_model": 16, "layers": 1, "heads": 2, "seq_len": 16, "d_ff": 16, "experts": 2, "top_k": 1, "d_expert": 8,
       "batch": 2, "steps": 3, "router": "switch"}' > "$work/good.json"
"$moe" train --data "$data" --config "$work/good.json" --steps 2 --out "$work/cfg" -q -t 1 || fail "config file run failed"
grep -q '"steps":	2' "$work/cfg/train.json" || fail "flag did not override the config file"
grep -q '"moe_router":	"switch"' "$work/cfg/config.json" || fail "config file router not used"
# resuming with a different model shape is refused, naming the state file
expect 2 "train_state.bin" -- "$moe" train --data "$data" --out "$work/cfg" --resume --steps 5 --d-model 32
expect 1 "at step 2 already" -- "$moe" train --data "$data" --out "$work/cfg" --resume
# a corrupt state is detected
printf 'garbage' | dd of="$work/cfg/train_state.bin" bs=1 seek=100 conv=notrunc 2> /dev/null
expect 2 "checksum" -- "$moe" train --data "$data" --out "$work/cfg" --resume --steps 5
# a byte-level checkpoint carries a tokenizer.json: moe run and moe tokenize use it
"$moe" tokenize "$work/cfg" "To be" > "$work/tok.txt" || fail "moe tokenize on a trained checkpoint failed"
[ "$(cut -f1 "$work/tok.txt" | tr '\n' ',')" = "84,111,32,98,101," ] || fail "byte tokenizer ids: $(cat "$work/tok.txt")"
"$moe" run "$work/cfg" -p "All the" -n 8 --seed 1 -t 1 > "$work/run.txt" 2> "$work/err.txt" || fail "moe run failed: $(cat "$work/err.txt")"
[ -s "$work/run.txt" ] || fail "moe run wrote nothing"
# --tokenizer: a missing or broken tokenizer.json, or a --vocab below its vocabulary, is refused clearly
expect 2 "nothing.json" -- "$moe" train --data "$data" "${tiny[@]}" --tokenizer "$work/nothing.json"
printf '{"model": {"type": "BPE", "vocab": ' > "$work/broken.json"
expect 2 "broken.json" -- "$moe" train --data "$data" "${tiny[@]}" --tokenizer "$work/broken.json"
expect 1 "smaller than the vocabulary" -- "$moe" train --data "$data" "${tiny[@]}" --tokenizer "$work/cfg" --vocab 100
(cat "$data"; printf 'bad \xff\xfe utf-8\n'; cat "$data") > "$work/bad_utf8.txt"
expect 2 "bad_utf8.txt (encoding with" -- "$moe" train --data "$work/bad_utf8.txt" "${tiny[@]}" --tokenizer "$work/cfg"
# training with a tokenizer.json (here the byte-level one of the checkpoint above) copies it along
"$moe" train --data "$data" "${tiny[@]}" --tokenizer "$work/cfg/tokenizer.json" --out "$work/tk" --sample 5 --prompt "All" \
  > "$work/sample.txt" 2> "$work/err.txt" || fail "training with --tokenizer failed: $(cat "$work/err.txt")"
cmp -s "$work/cfg/tokenizer.json" "$work/tk/tokenizer.json" || fail "the checkpoint lacks the training tokenizer"
grep -q '^All' "$work/sample.txt" || fail "--sample did not continue the prompt: $(cat "$work/sample.txt")"
echo "all train CLI checks passed"
