#!/usr/bin/env bash
# upcycle.sh - Sparse Upcycling: a dense model trained by `moe train --experts 0` is upcycled to 4
# experts (top-2, renormalised); since every expert is a copy of the dense FFN and the chosen weights
# sum to one, the upcycled model's logits must equal the dense model's; then training continues from
# it with --init. Both layouts: qwen3_moe (q/k norms) to qwen3_moe, llama (none) to mixtral; and refusals.
# Usage: upcycle.sh MOE_BINARY SCRATCH_DIR
set -uo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
data=$work/data.txt
for i in $(seq 1 80); do echo "Now is the winter of our discontent made glorious summer by this sun of York $i."; done > "$data"
shape=(--d-model 32 --layers 2 --heads 4 --kv-heads 2 --seq-len 32 --d-ff 64 --batch 4 --warmup 2 --lr 5e-3 -q -t 1)
toks=78,111,119,32,105,115,32,116,104,101

maxdiff() {   # max |a - b| over the logits of two `moe logits` outputs
  paste <(tr -s ',[]{}" \n' '\n' < "$1" | grep -E '^-?[0-9]') <(tr -s ',[]{}" \n' '\n' < "$2" | grep -E '^-?[0-9]') |
    awk 'BEGIN{m=0} {d=$1-$2; if (d<0) d=-d; if (d>m) m=d} END{printf "%.3g\n", m}'
}

for qk in 1 0; do
  dense=$work/dense$qk moe_out=$work/moe$qk
  "$moe" train --data "$data" "${shape[@]}" --experts 0 --qk-norm $qk --steps 8 --out "$dense" 2> "$work/err.txt" ||
    fail "dense training failed: $(cat "$work/err.txt")"
  grep -q "\"model_type\":	\"$([ $qk = 1 ] && echo qwen3_moe || echo llama)\"" "$dense/config.json" ||
    fail "unexpected dense layout: $(grep model_type "$dense/config.json")"
  "$moe" upcycle "$dense" "$moe_out" --experts 4 --top-k 2 2> "$work/err.txt" || fail "upcycle failed: $(cat "$work/err.txt")"
  "$moe" logits "$dense" --tokens $toks > "$work/d.json" 2> /dev/null || fail "dense logits failed"
  "$moe" logits "$moe_out" --tokens $toks > "$work/m.json" || fail "upcycled logits failed"
  diff=$(maxdiff "$work/d.json" "$work/m.json")
  awk -v d="$diff" 'BEGIN{exit !(d < 1e-4)}' || fail "upcycled logits differ from the dense ones by $diff"
  grep -q "\"model_type\":	\"$([ $qk = 1 ] && echo qwen3_moe || echo mixtral)\"" "$moe_out/config.json" ||
    fail "unexpected layout: $(grep model_type "$moe_out/config.json")"
  "$moe" info "$moe_out" | grep -q "4 routed, top-2" || fail "moe info does not show the experts"
  "$moe" train --init "$moe_out" --data "$data" --steps 3 --batch 4 --out "$work/cont$qk" -q -t 1 2> "$work/err.txt" ||
    fail "training from the upcycled model failed: $(cat "$work/err.txt")"
  echo "ok qk-norm=$qk: upcycled logits equal the dense ones (max diff $diff); training continues"
done
"$moe" upcycle "$work/moe1" "$work/again" --experts 4 2> "$work/err.txt" && fail "upcycling an MoE model succeeded"
grep -q "already a MoE layer" "$work/err.txt" || fail "unclear refusal: $(cat "$work/err.txt")"
"$moe" upcycle "$work/dense1" "$work/x" 2> "$work/err.txt"; [ $? = 1 ] || fail "missing --experts is not a usage error"
"$moe" upcycle "$work/nowhere" "$work/x" --experts 2 2> /dev/null; [ $? = 2 ] || fail "a missing model is not an input error"
# a dense model without q/k norms becomes the mixtral layout: it cannot keep --norm-topk 0 (mixtral always
# renormalises) nor take deepseek_v3's router (dots1 has q/k norms); the refusal names no flag upcycle lacks
for bad in "--norm-topk 0:always renormalises" "--router deepseek_v3:has none"; do
  "$moe" upcycle "$work/dense0" "$work/x" --experts 4 ${bad%%:*} 2> "$work/err.txt"; rc=$?
  [ $rc = 1 ] || fail "upcycle ${bad%%:*} of a model without q/k norms exited $rc: $(cat "$work/err.txt")"
  grep -q "${bad#*:}" "$work/err.txt" || fail "upcycle ${bad%%:*}: unclear refusal: $(cat "$work/err.txt")"
  grep -q -- "--qk-norm 1 or\|--layout" "$work/err.txt" && fail "upcycle ${bad%%:*} suggests a flag upcycle lacks: $(cat "$work/err.txt")"
  [ -e "$work/x" ] && fail "upcycle ${bad%%:*} wrote $work/x"
done
echo "all upcycle checks passed"
