#!/usr/bin/env bash
# train_state_bad.sh - `moe train --resume` on a crafted train_state.bin (issue 9 item 12): a negative,
# zero or extreme step counter (with the checksum recomputed, so only the step is wrong, and without),
# a huge value count or tensor count, a wrong version, a truncated header, NaN/Inf values or a negative
# second moment (and --init weights holding NaN): exit 2 and one line naming the file, never a run that
# starts from a bogus step (nor, under UBSan, an overflow in the loop) or a "diverged" loss blamed on --lr.
# Usage: train_state_bad.sh MOE_BINARY SCRATCH_DIR
set -uo pipefail
moe=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
data=$work/data.txt
for i in $(seq 1 60); do echo "Line $i: the quick brown fox jumps over the lazy dog, again and again."; done > "$data"
fail() { echo "FAIL: $*"; exit 1; }
ck=$work/ck
"$moe" train --data "$data" --out "$ck" --d-model 16 --layers 1 --heads 2 --seq-len 16 --d-ff 32 --experts 2 --top-k 1 \
  --d-expert 8 --batch 2 --steps 3 --eval-every 0 --quiet -t 1 || fail "training failed"

# craft NAME FIELD VALUE RECHECKSUM: a copy of the checkpoint with one header field of train_state.bin set
craft() {
  rm -rf "$work/$1"; cp -r "$ck" "$work/$1"
  python3 - "$work/$1/train_state.bin" "$2" "$3" "$4" <<'EOF' || fail "crafting $1"
import struct, sys
path, field, value, rechecksum = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
b = bytearray(open(path, "rb").read())
# header: magic[8], version u32, n_tensors u32, step i64, data_rng u64, model_rng u64, total u64, checksum u64
if field == "value0":      # the first value: 0 -> NaN, 1 -> +Inf
    struct.pack_into("<f", b, 56, float("nan") if value == 0 else float("inf"))
elif field == "moment2":   # the first second moment: -1
    total = struct.unpack_from("<Q", b, 40)[0]
    struct.pack_into("<f", b, 56 + 8 * total, -1.0)
else:
    fmt = {"version": (8, "<I"), "n_tensors": (12, "<I"), "step": (16, "<q"), "total": (40, "<Q")}[field]
    struct.pack_into(fmt[1], b, fmt[0], value)
if rechecksum:   # FNV-1a over step, the two random states and the three value arrays, as the writer does
    h, P, M = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1
    for byte in bytes(b[16:40]) + bytes(b[56:]):
        h = ((h ^ byte) * P) & M
    struct.pack_into("<Q", b, 48, h)
open(path, "wb").write(b)
EOF
}

# expect NAME WORD: resume must exit 2 with one line naming train_state.bin and containing WORD
expect() {
  timeout 60 "$moe" train --data "$data" --out "$work/$1" --resume --steps 10 --quiet -t 1 > /dev/null 2> "$work/err.txt"
  rc=$?
  [ $rc = 2 ] || fail "$1: exit $rc (want 2): $(cat "$work/err.txt")"
  [ "$(wc -l < "$work/err.txt")" = 1 ] || fail "$1: not one line: $(cat "$work/err.txt")"
  grep -q "$1/train_state.bin" "$work/err.txt" || fail "$1: the file is not named: $(cat "$work/err.txt")"
  grep -q -- "$2" "$work/err.txt" || fail "$1: no '$2' in: $(cat "$work/err.txt")"
  grep -qi "runtime error\|sanitizer" "$work/err.txt" && fail "$1: sanitizer report: $(cat "$work/err.txt")"
  echo "ok $1: $(cat "$work/err.txt")"
}

for step in -1 0 -9223372036854775808 9223372036854775807 2147483648; do
  name=step_${step#-}; [ "${step:0:1}" = - ] && name=step_minus_${step#-}
  craft "$name" step "$step" 1; expect "$name" "step counter $step is out of range"
  craft "${name}_nosum" step "$step" 0; expect "${name}_nosum" "step counter"
done
craft total_huge total 18446744073709551615 1; expect total_huge "holds 18446744073709551615 values"
craft tensors_huge n_tensors 4294967295 1; expect tensors_huge "in 4294967295 tensors"
craft version_bad version 4294967295 1; expect version_bad "version 4294967295 is not supported"
# a state that is not finite: named at load, not blamed on the learning rate steps later
craft nan_value value0 0 1; expect nan_value "the value is nan"
craft inf_value value0 1 1; expect inf_value "the value is inf"
craft neg_moment moment2 0 1; expect neg_moment "the second moment is -1"
# --init weights holding NaN
rm -rf "$work/nan_init"; cp -r "$ck" "$work/nan_init"
python3 - "$work/nan_init/model.safetensors" <<'EOF' || fail "crafting nan_init"
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack_from("<Q", b, 0)[0]
struct.pack_into("<f", b, 8 + n, float("nan"))
open(sys.argv[1], "wb").write(b)
EOF
timeout 60 "$moe" train --data "$data" --init "$work/nan_init" --out "$work/from_nan" --steps 2 --quiet -t 1 2> "$work/err.txt"
rc=$?
[ $rc = 2 ] && grep -q "nan_init: tensor .* is nan; training needs finite starting weights" "$work/err.txt" ||
  fail "--init with NaN weights: exit $rc: $(cat "$work/err.txt")"
# a header cut short
rm -rf "$work/short"; cp -r "$ck" "$work/short"; head -c 30 "$ck/train_state.bin" > "$work/short/train_state.bin"
expect short "not a moe training state file"
# the untouched checkpoint still resumes (the checks above did not refuse everything)
"$moe" train --data "$data" --out "$ck" --resume --steps 5 --quiet -t 1 || fail "a good state does not resume"
echo "ok"
