#!/usr/bin/env bash
# hostile_paths.sh - every command against hostile paths (docs/ROBUSTNESS.md). FIFOs and other
# non-regular files given as inputs fail at once with exit 2 and one line naming the file, never
# block; output paths never replace a FIFO, a device, a folder or an input file, and are checked
# before the work starts; output lost on stdout (a full disk, a closed stdout) is an error.
# Usage: hostile_paths.sh MOE_BINARY SCRATCH_DIR
set -uo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect CODE NEEDLE -- ARGS...: exit code CODE within MOE_TEST_TIMEOUT (20) s, stderr one line containing NEEDLE.
expect() {
  local code=$1 needle=$2; shift 3
  timeout "${MOE_TEST_TIMEOUT:-20}" "$moe" "$@" < /dev/null > "$work/out.txt" 2> "$work/err.txt"
  local rc=$? lines
  lines=$(wc -l < "$work/err.txt")
  if [ "$rc" = 124 ]; then fail "moe $* blocked (killed after the timeout)"; return; fi
  if [ "$rc" != "$code" ] || [ "$lines" != 1 ] || ! grep -qF -- "$needle" "$work/err.txt"; then
    fail "moe $* -> exit $rc (want $code), $lines stderr lines (want 1) wanting '$needle': $(head -c 400 "$work/err.txt")"
  fi
}

data=$work/data.txt
for i in $(seq 1 40); do echo "All the world's a stage, and all the men and women merely players $i."; done > "$data"
tiny=(--d-model 16 --layers 2 --heads 2 --seq-len 16 --d-ff 16 --experts 2 --top-k 1 --d-expert 8 --batch 2 -q -t 1)
model=$work/model
"$moe" train --data "$data" "${tiny[@]}" --steps 2 --out "$model" || { echo "FAIL: cannot train the test model"; exit 1; }
echo "1 2 3 4 5 6 7 8 9 10" > "$work/ids.txt"
"$moe" fit-predictor "$model" --tokens-file "$work/ids.txt" --ridge 0.01 -o "$work/pred.safetensors" > /dev/null 2>&1 ||
  { echo "FAIL: cannot fit the test predictor"; exit 1; }

# copy_model NAME: a fresh copy of the model folder
copy_model() { rm -rf "$work/$1"; cp -r "$model" "$work/$1"; echo "$work/$1"; }
fifo() { rm -f "$1"; mkfifo "$1"; }

# ---- item 8: FIFOs as inputs ----
m=$(copy_model fifo_config); fifo "$m/config.json"
expect 2 "$m/config.json" -- info "$m"
m=$(copy_model fifo_weights); fifo "$m/model.safetensors"
expect 2 "$m/model.safetensors" -- info "$m"
expect 2 "$m/model.safetensors" -- logits "$m" --tokens 1,2
m=$(copy_model fifo_index); rm "$m/model.safetensors"; fifo "$m/model.safetensors.index.json"
expect 2 "$m/model.safetensors.index.json" -- info "$m"
m=$(copy_model fifo_shard); mv "$m/model.safetensors" "$m/a.safetensors"
printf '{"weight_map": {"model.embed_tokens.weight": "b.safetensors"}}' > "$m/model.safetensors.index.json"
fifo "$m/b.safetensors"
expect 2 "$m/b.safetensors" -- info "$m"
m=$(copy_model fifo_tok); fifo "$m/tokenizer.json"
expect 2 "$m/tokenizer.json" -- tokenize "$m" hello
expect 2 "$m/tokenizer.json" -- run "$m" -p hello -n 2
expect 2 "$m/tokenizer.json" -- eval "$m" --text "$data"
m=$(copy_model fifo_tokcfg); fifo "$m/tokenizer_config.json"
expect 2 "$m/tokenizer_config.json" -- tokenize "$m" hello
m=$(copy_model fifo_template); fifo "$m/chat_template.jinja"
expect 2 "$m/chat_template.jinja" -- run "$m" -p hello -n 2 --chat
f=$work/fifo_in; fifo "$f"
expect 2 "$f" -- train --data "$f" "${tiny[@]}" --steps 1
expect 2 "$f" -- train --data "$data" "${tiny[@]}" --steps 1 --tokenizer "$f"
expect 2 "$f" -- train --data "$data" "${tiny[@]}" --steps 1 --config "$f"
expect 2 "$f" -- eval "$model" --tokens-file "$f"
expect 2 "$f" -- eval "$model" --text "$f"
expect 2 "$f" -- eval "$model" --text "$data" --tokenizer "$f"
expect 2 "$f" -- fit-predictor "$model" --text "$f" -o "$work/p2.safetensors"
expect 2 "$f" -- fit-predictor "$model" --tokens-file "$f" -o "$work/p2.safetensors"
expect 2 "$f" -- generate "$model" --tokens 1,2 -n 2 --mem-budget 64K --prefetch --predictor "$f"
expect 2 "$f" -- quantize "$model" "$work/q" --type mixed --budget 1M --calib "$f"
expect 2 "$f" -- quantize "$model" "$work/q" --type mixed --budget 1M --calib-ids "$f"
expect 2 "$f" -- run "$model" -f "$f" -n 2
expect 2 "$f" -- tokenize "$model" --file "$f"
expect 2 "$f" -- tokenize "$model" --decode "@$f"
expect 2 "$f" -- tokenize "$f" hello
m=$(copy_model fifo_state); fifo "$m/train_state.bin"
expect 2 "$m/train_state.bin" -- train --data "$data" --out "$m" --resume --steps 3 -q
m=$(copy_model fifo_trainjson); fifo "$m/train.json"
expect 2 "$m/train.json" -- train --data "$data" --out "$m" --resume --steps 3 -q
expect 2 "$m/train.json" -- train --data "$data" --init "$m" --steps 1 -q
# other kinds of non-regular files
expect 2 "not a regular file" -- eval "$model" --tokens-file /dev/null
expect 2 "not a regular file" -- train --data "$work" "${tiny[@]}" --steps 1

# ---- item 9: output paths never replace a non-regular file, never an input, and fail before the work ----
o=$work/outs; mkdir -p "$o"
cp "$model/config.json" "$work/config.copy"
fifo "$o/fifo"; ln -sf /dev/null "$o/to_null"; ln -sf "$o/nowhere/x" "$o/dangling"
ln -sf "$model/config.json" "$o/to_config"
for flag in --out --routes; do
  expect 2 "$o/fifo: is a FIFO" -- logits "$model" --tokens 1,2 $flag "$o/fifo"
  expect 2 "/dev/null, which is a character device" -- logits "$model" --tokens 1,2 $flag "$o/to_null"
  expect 2 "symbolic link to nothing" -- logits "$model" --tokens 1,2 $flag "$o/dangling"
  expect 2 "is a folder" -- logits "$model" --tokens 1,2 $flag "$o"
  expect 2 "$o/missing/x.json: cannot write there" -- logits "$model" --tokens 1,2 $flag "$o/missing/x.json"
  expect 1 "moe logits: $flag $model/config.json is a file this command reads" -- logits "$model" --tokens 1,2 $flag "$model/config.json"
  expect 1 "moe logits: $flag $o/to_config is $model/config.json" -- logits "$model" --tokens 1,2 $flag "$o/to_config"
done
[ -p "$o/fifo" ] && [ -L "$o/to_null" ] && [ -c /dev/null ] || fail "an output check replaced the file it refused"
expect 1 "same file" -- logits "$model" --tokens 1,2 --out "$o/a.json" --routes "$o/a.json"
cmp -s "$model/config.json" "$work/config.copy" || fail "the model's config.json changed"
expect 1 "moe fit-predictor: -o $model/model.safetensors" -- fit-predictor "$model" --tokens-file "$work/ids.txt" -o "$model/model.safetensors"
expect 1 "moe fit-predictor: -o $work/ids.txt" -- fit-predictor "$model" --tokens-file "$work/ids.txt" -o "$work/ids.txt"
expect 2 "is a FIFO" -- fit-predictor "$model" --tokens-file "$work/ids.txt" -o "$o/fifo"
expect 1 "must differ from the model folder" -- quantize "$model" "$model/." --type q8_0
expect 1 "must differ from the model folder" -- upcycle "$model" "$model" --experts 2
expect 2 "is a FIFO, not a folder" -- quantize "$model" "$o/fifo" --type q8_0
mkdir -p "$o/q"; fifo "$o/q/model.safetensors"
expect 2 "$o/q/model.safetensors: is a FIFO" -- quantize "$model" "$o/q" --type q8_0
mkdir -p "$o/q2"; ln -sf "$model/tokenizer.json" "$o/q2/tokenizer.json"
expect 1 "moe quantize: OUT $o/q2/tokenizer.json is $model/tokenizer.json" -- quantize "$model" "$o/q2" --type q8_0
# moe train checks its folder before the first step, not at the first save (--steps is large on purpose)
expect 2 "is a FIFO, not a folder" -- train --data "$data" "${tiny[@]}" --steps 100000 --out "$o/fifo"
expect 2 "cannot write there" -- train --data "$data" "${tiny[@]}" --steps 100000 --out "$o/missing/ckpt"
expect 1 "moe train: --out $model is the model folder" -- train --data "$data" --init "$model" --steps 100000 --out "$model" -q
mkdir -p "$o/ck"; fifo "$o/ck/train_state.bin"
expect 2 "$o/ck/train_state.bin: is a FIFO" -- train --data "$data" "${tiny[@]}" --steps 100000 --out "$o/ck"
# a link to a regular file is written through: the link stays
echo old > "$o/target.json"; ln -sf "$o/target.json" "$o/link.json"
"$moe" logits "$model" --tokens 1,2 --out "$o/link.json" 2> "$work/err.txt" || fail "logits through a link: $(cat "$work/err.txt")"
[ -L "$o/link.json" ] && grep -q logits "$o/target.json" || fail "a link to a regular file was not written through"

# ---- item 10: a failing stdout (full disk, closed) ends with exit 2 and one line naming it ----
stdout_cases=(
  "info $model" "info $model --json" "logits $model --tokens 1,2" "generate $model --tokens 1,2 -n 3"
  "run $model -p hello -n 3 --seed 1" "tokenize $model hello" "tokenize $model --decode 65,66"
  "eval $model --tokens-file $work/ids.txt --ctx 4" "bench $model -p 4 -n 2 --no-bandwidth" "--help" "--version"
  "fit-predictor $model --tokens-file $work/ids.txt --ridge 0.01 -o $work/p3.safetensors"
  "train --data $data ${tiny[*]} --steps 1 --json"
)
for c in "${stdout_cases[@]}"; do
  for redir in full closed; do
    if [ $redir = full ]; then timeout "${MOE_TEST_TIMEOUT:-20}" "$moe" $c > /dev/full 2> "$work/err.txt"
    else timeout "${MOE_TEST_TIMEOUT:-20}" "$moe" $c >&- 2> "$work/err.txt"; fi
    rc=$?
    if [ "$rc" != 2 ] || ! tail -n 1 "$work/err.txt" | grep -q "^moe: standard output: cannot write"; then
      fail "moe $c with a $redir stdout -> exit $rc (want 2), stderr: $(tail -c 300 "$work/err.txt")"
    fi
    [ "$(grep -c 'standard output' "$work/err.txt")" = 1 ] || fail "moe $c with a $redir stdout: not one line"
  done
done
# a closed stdout must not let a file opened later take its descriptor
rm -f "$o/c.json"
"$moe" logits "$model" --tokens 1,2 --out "$o/c.json" >&- 2> "$work/err.txt" || fail "logits --out with a closed stdout: $(cat "$work/err.txt")"
grep -q '"logits"' "$o/c.json" || fail "logits --out with a closed stdout wrote a bad file"

# ---- item 19: JSON reports stay JSON: strings escaped ----
weird=$o/'we"ird\name.safetensors'
"$moe" fit-predictor "$model" --tokens-file "$work/ids.txt" --ridge 0.01 -o "$weird" --json > "$work/fit.json" 2> /dev/null ||
  fail "fit-predictor to an odd file name failed"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]), parse_constant=lambda t: 1/0); assert d["output"]==sys.argv[2]' \
  "$work/fit.json" "$weird" 2> /dev/null || fail "fit-predictor --json is not valid JSON naming the output: $(head -c 200 "$work/fit.json")"

# ---- items 8-10 for the commands that came later: trace, stats, prune, merge, superexperts, serve ----
f=$work/fifo_in2; fifo "$f"
expect 2 "$f: is a FIFO" -- trace "$model" --text "$f" --out "$o/tr_a"
expect 2 "$f: is a FIFO" -- trace "$model" --tokens-file "$f" --out "$o/tr_a"
expect 2 "$f: is a FIFO" -- trace "$model" --text "$data" --tokenizer "$f" --out "$o/tr_a"
expect 2 "$f: is a FIFO" -- prune "$model" "$o/pr_a" --method freq --keep 1 --calib "$f"
expect 2 "$f: is a FIFO" -- prune "$model" "$o/pr_a" --method freq --keep 1 --calib-ids "$f"
expect 2 "$f: is a FIFO" -- merge "$model" "$o/mg_a" --method msmoe --groups 1 --calib "$f"
expect 2 "$f: is a FIFO" -- superexperts "$model" --text "$f"
expect 2 "$f: is a FIFO" -- superexperts "$model" --tokens-file "$f"
expect 2 "$f: is a FIFO" -- serve "$model" --port 0 --tokenizer "$f"
m=$(copy_model fifo_config2); fifo "$m/config.json"
for c in "trace $m --text $data --out $o/tr_b" "prune $m $o/pr_b --method freq --keep 1 --calib $data" \
         "merge $m $o/mg_b --method msmoe --groups 1 --calib $data" "superexperts $m --text $data" "serve $m --port 0"; do
  # shellcheck disable=SC2086
  expect 2 "$m/config.json: is a FIFO" -- $c
done
expect 1 "is a file this command reads" -- superexperts "$model" --text "$data" --plot "$model/config.json"
expect 2 "$f: is a FIFO, not a regular file; refusing to replace it" -- superexperts "$model" --text "$data" --plot "$f"
expect 1 "the output folder must differ from the model folder" -- prune "$model" "$model" --method freq --keep 1 --calib "$data"
"$moe" trace "$model" --text "$data" --out "$o/tr_ok" --max-tokens 32 -t 1 > /dev/null 2>&1 || fail "trace of the test model failed"
mkdir -p "$o/st_fifo"; fifo "$o/st_fifo/report.html"
expect 2 "$o/st_fifo/report.html: is a FIFO" -- stats "$o/tr_ok" --out "$o/st_fifo"
[ -e "$o/st_fifo/stats.json" ] && fail "stats wrote stats.json before finding its report.html output a FIFO"
for c in "stats $o/tr_ok --out $o/st_full -t 1" "superexperts $model --text $data -t 1 --json" \
         "prune $model $o/pr_full --method freq --keep 1 --calib $data -t 1"; do
  # shellcheck disable=SC2086
  timeout "${MOE_TEST_TIMEOUT:-20}" "$moe" $c > /dev/full 2> "$work/err.txt"; rc=$?
  [ $rc = 2 ] && tail -n 1 "$work/err.txt" | grep -q "^moe: standard output: cannot write" ||
    fail "moe $c with a full stdout -> exit $rc: $(tail -c 300 "$work/err.txt")"
done
m=$o/tr_fifo; cp -r "$o/tr_ok" "$m"; fifo "$m/trace.bin"
expect 2 "$m/trace.bin: is a FIFO" -- stats "$m"

# ---- messages: usage errors of the load options name the command ----
expect 1 "moe generate: --no-predict needs --prefetch" -- generate "$model" --tokens 1,2 --no-predict
expect 1 "moe logits: --predictor needs --prefetch" -- logits "$model" --tokens 1,2 --predictor "$work/pred.safetensors"
expect 1 "moe eval: expert memory budget of 1024 bytes is smaller than one expert" -- eval "$model" --tokens-file "$work/ids.txt" --mem-budget 1K

if [ "$fails" -gt 0 ]; then echo "$fails hostile-path checks failed"; exit 1; fi
echo "all hostile-path checks passed"
