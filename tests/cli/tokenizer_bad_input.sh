#!/usr/bin/env bash
# `moe tokenize` on bad input: broken tokenizer.json files, bad text, bad ids and bad flags. Every
# bad file or text must give exit code 2 and exactly one line on stderr that names the file;
# flag mistakes give exit code 1. Usage: tokenizer_bad_input.sh MOE_BINARY SCRATCH_DIR
set -u
moe=$1
dir=$2
rm -rf "$dir" && mkdir -p "$dir"
fails=0

# expect CODE NEEDLE -- ARGS...: run moe, check the exit code, and that stderr is one line containing NEEDLE.
expect() {
    local code=$1 needle=$2
    shift 3
    "$moe" "$@" >"$dir/out" 2>"$dir/err"
    local rc=$? lines
    lines=$(wc -l <"$dir/err")
    if [ "$rc" != "$code" ] || [ "$lines" != 1 ] || ! grep -qF -- "$needle" "$dir/err"; then
        echo "FAIL: moe $* -> exit $rc (want $code), $lines stderr lines (want 1) wanting '$needle':"
        head -c 400 "$dir/err"
        fails=$((fails + 1))
    fi
}

good='{"version":"1.0","added_tokens":[{"id":3,"content":"<s>","special":true}],"normalizer":null,
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},"post_processor":null,
"decoder":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3},"merges":["a b"]}}'
printf '%s' "$good" >"$dir/good.json"

# The happy path first, so that failures below mean something.
out=$("$moe" tokenize "$dir/good.json" --ids "ab ab<s>a")
[ "$out" = "2,3,2,4,0" ] || { echo "FAIL: good tokenizer gave '$out'"; fails=$((fails + 1)); }
out=$("$moe" tokenize "$dir/good.json" --decode 2,3,2,4,0)
[ "$out" = "ab ab<s>a" ] || { echo "FAIL: decode gave '$out'"; fails=$((fails + 1)); }
out=$("$moe" tokenize "$dir/good.json" --decode 2,3,2,4,0 --skip-special --stream)
[ "$out" = "ab aba" ] || { echo "FAIL: stream decode gave '$out'"; fails=$((fails + 1)); }
printf 'ab' >"$dir/text.txt"
out=$("$moe" tokenize "$dir/good.json" --file "$dir/text.txt")
[ "$out" = "$(printf '2\tab')" ] || { echo "FAIL: --file gave '$out'"; fails=$((fails + 1)); }

# Broken tokenizer files.
head -c 150 "$dir/good.json" >"$dir/truncated.json"
expect 2 "$dir/truncated.json" -- tokenize "$dir/truncated.json" x
printf '{"model":{"type":"BPE","vocab":{"\xff\xfe":0},"merges":[]}}' >"$dir/latin1.json"
expect 2 "$dir/latin1.json" -- tokenize "$dir/latin1.json" x
printf '' >"$dir/empty.json"
expect 2 "$dir/empty.json" -- tokenize "$dir/empty.json" x
printf '{"model":{"type":"BPE","vocab":{"a":"zero"},"merges":[]}}' >"$dir/idtype.json"
expect 2 "$dir/idtype.json" -- tokenize "$dir/idtype.json" x
printf '{"model":{"type":"BPE","vocab":{"a":0},"merges":"a b"}}' >"$dir/mergestype.json"
expect 2 "$dir/mergestype.json" -- tokenize "$dir/mergestype.json" x
printf '{"model":{"type":"WordPiece","vocab":{"a":0}}}' >"$dir/wordpiece.json"
expect 2 "$dir/wordpiece.json" -- tokenize "$dir/wordpiece.json" x
printf '{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"[z-a]"},"behavior":"Isolated"}}' >"$dir/regex.json"
expect 2 "$dir/regex.json" -- tokenize "$dir/regex.json" x
printf '{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"added_tokens":{"content":"x"}}' >"$dir/added.json"
expect 2 "$dir/added.json" -- tokenize "$dir/added.json" x
printf '{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"model":null}' >"$dir/dupkey.json"
expect 2 "$dir/dupkey.json" -- tokenize "$dir/dupkey.json" x
expect 2 "$dir/missing.json" -- tokenize "$dir/missing.json" x
mkdir -p "$dir/emptyfolder"
expect 2 "$dir/emptyfolder/tokenizer.json" -- tokenize "$dir/emptyfolder" x
head -c 100000 /dev/urandom >"$dir/random.json" 2>/dev/null || dd if=/dev/urandom of="$dir/random.json" bs=1000 count=100 2>/dev/null
expect 2 "$dir/random.json" -- tokenize "$dir/random.json" x

# Bad text and bad ids with a good tokenizer.
printf 'a\xffb' >"$dir/bad.txt"
expect 2 "$dir/bad.txt" -- tokenize "$dir/good.json" --file "$dir/bad.txt"
expect 2 "text: not valid UTF-8" -- tokenize "$dir/good.json" "$(printf 'a\xc3')"
expect 2 "$dir/nofile.txt" -- tokenize "$dir/good.json" --file "$dir/nofile.txt"
expect 2 "token id 99" -- tokenize "$dir/good.json" --decode 0,99
printf '0,1\n0,x\n' >"$dir/ids.txt"
expect 1 "bad token id" -- tokenize "$dir/good.json" --decode "@$dir/ids.txt"
expect 2 "$dir/noids.txt" -- tokenize "$dir/good.json" --decode "@$dir/noids.txt"

# Memory in proportion to the tokens the file holds: a vocab id of 16M (two tokens and an added one)
# must not size tables by the id. Outside sanitizer builds (which reserve terabytes of address space)
# the address space is capped at 150 MB, which tables of 16M entries (256 MB) would exceed.
printf '{"model":{"type":"BPE","vocab":{"a":0,"b":16777215},"merges":[]},"added_tokens":[{"id":1,"content":"<s>","special":true}]}' >"$dir/big_id.json"
if grep -q __asan_init "$moe" || [ "${MOE_TEST_SANITIZED:-0}" = 1 ]; then limit=unlimited; else limit=150000; fi
out=$(ulimit -v $limit; "$moe" tokenize "$dir/big_id.json" "ab<s>" --ids 2>&1)
[ "$out" = "0,16777215,2" ] || { echo "FAIL: a tokenizer with id 16777215: '$out'"; fails=$((fails + 1)); }
out=$(ulimit -v $limit; "$moe" tokenize "$dir/big_id.json" --decode 16777215,2,0 2>&1)
[ "$out" = "b <s> a" ] || { echo "FAIL: decoding id 16777215: '$out'"; fails=$((fails + 1)); }

# Flag mistakes: usage errors, exit 1.
expect 1 "bad token id" -- tokenize "$dir/good.json" --decode 1,-2
expect 1 "not both" -- tokenize "$dir/good.json" text --file "$dir/text.txt"
expect 1 "not both" -- tokenize "$dir/good.json"
expect 1 "--decode takes no TEXT" -- tokenize "$dir/good.json" x --decode 1
expect 1 "unknown option" -- tokenize "$dir/good.json" x --bogus
expect 1 "missing argument" -- tokenize
"$moe" tokenize --help >"$dir/out" 2>&1 || { echo "FAIL: --help exit code"; fails=$((fails + 1)); }
grep -q -- "--decode" "$dir/out" || { echo "FAIL: --help lacks --decode"; fails=$((fails + 1)); }

if [ "$fails" != 0 ]; then
    echo "$fails checks failed"
    exit 1
fi
echo "tokenizer bad input: all checks passed"
