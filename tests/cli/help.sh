#!/usr/bin/env bash
# Every command listed by `moe --help` answers --help with a usage line and exit 0; unknown commands
# and options are usage errors (exit 1) with one line on stderr.
set -u
moe=$1
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

out=$("$moe" --help); rc=$?
check "moe --help exits 0" "[ $rc -eq 0 ]"
cmds=$(printf '%s\n' "$out" | awk '/^commands:/{f=1;next} f && /^  [a-z]/{print $1}')
check "moe --help lists commands" "[ -n \"$cmds\" ]"
for c in $cmds; do
  h=$("$moe" "$c" --help 2>&1); rc=$?
  check "moe $c --help exits 0" "[ $rc -eq 0 ]"
  check "moe $c --help prints usage" "printf '%s' \"\$h\" | grep -q '^usage: moe $c'"
  check "moe $c --help documents -t" "printf '%s' \"\$h\" | grep -q -- '--threads'"
  err=$("$moe" "$c" --no-such-flag 2>&1 >/dev/null); rc=$?
  check "moe $c --no-such-flag exits 1 (got $rc)" "[ $rc -eq 1 ]"
  check "moe $c --no-such-flag: one line" "[ \$(printf '%s\n' \"\$err\" | wc -l) -eq 1 ]"
done
"$moe" no-such-command >/dev/null 2>&1; rc=$?
check "unknown command exits 1" "[ $rc -eq 1 ]"
"$moe" >/dev/null 2>&1; rc=$?
check "no command exits 1" "[ $rc -eq 1 ]"
[ $fail -eq 0 ] && echo "help ok"
exit $fail
