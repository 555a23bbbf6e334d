#!/usr/bin/env bash
# `cmake --install` of the build this moe binary belongs to, into a scratch prefix: the header, the
# shared and static libraries, the pkg-config file and the command land there; libmoe.so exports
# exactly the functions include/moe.h declares; a C program built only with `pkg-config --cflags
# --libs moe` links, runs, and gets libmoe's errors. Skipped in the sanitizer build (a program linking
# an ASan library needs the sanitizer runtime itself). Usage: install_pkgconfig.sh MOE_BINARY SCRATCH_DIR
set -u
moe=$1
dir=$2
build=$(cd "$(dirname "$moe")" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${MOE_TEST_SANITIZED:-0}" = 1 ]; then echo "install test skipped under the sanitizers"; exit 0; fi
if [ ! -e "$build/libmoe.so" ]; then echo "FAIL: $build has no libmoe.so (MOE_SHARED_LIB=OFF?)"; exit 1; fi
rm -rf "$dir" && mkdir -p "$dir"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cmake --install "$build" --prefix "$dir/prefix" >"$dir/install.log" 2>&1 || { cat "$dir/install.log"; fail "cmake --install"; }
libdir=$(dirname "$(find "$dir/prefix" -name moe.pc | head -1)")/..
for f in include/moe.h bin/moe; do [ -e "$dir/prefix/$f" ] || fail "$f not installed"; done
for f in libmoe.so libmoe.so.0 libmoe.a pkgconfig/moe.pc; do [ -e "$libdir/$f" ] || fail "lib/$f not installed"; done

# exports = declarations
grep -oE '^[a-z].*[ *]moe_[a-z0-9_]+\(' "$src/include/moe.h" | grep -oE 'moe_[a-z0-9_]+\($' | tr -d '(' | sort -u >"$dir/declared"
nm -D --defined-only "$libdir/libmoe.so" | awk '$2 == "T" {print $3}' | sort -u >"$dir/exported"
if ! cmp -s "$dir/declared" "$dir/exported"; then
    fail "libmoe.so exports differ from moe.h's functions:"
    diff "$dir/declared" "$dir/exported" | head -20
fi
[ "$(wc -l <"$dir/declared")" -gt 30 ] || fail "found only $(wc -l <"$dir/declared") declarations in moe.h"

cat >"$dir/use.c" <<'C'
#include <moe.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    moe_model *m = NULL;
    moe_status st = moe_model_load(argv[1], &m);
    if (st != MOE_EINPUT || m != NULL || !strstr(moe_last_error(), "no_such_model")) {
        printf("load: status %d, message '%s'\n", (int)st, moe_last_error());
        return 1;
    }
    printf("libmoe %s, SIMD %s, exit code for bad input %d\n", MOE_VERSION_STRING, moe_simd_name(), moe_exit_code(st));
    return 0;
}
C
export PKG_CONFIG_PATH="$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs moe) || fail "pkg-config --cflags --libs moe"
cc -o "$dir/use" "$dir/use.c" $flags >"$dir/cc.log" 2>&1 || { cat "$dir/cc.log"; fail "cc with pkg-config flags"; }
out=$(LD_LIBRARY_PATH="$libdir" "$dir/use" "$dir/no_such_model" 2>&1) || fail "the program: $out"
case "$out" in "libmoe 0"*) ;; *) fail "the program printed: $out" ;; esac
[ "$(pkg-config --modversion moe)" = "$(grep -oE 'MOE_VERSION_STRING "[^"]+"' "$src/include/moe.h" | cut -d'"' -f2)" ] ||
    fail "pkg-config version $(pkg-config --modversion moe)"
[ $fails -eq 0 ] && echo "install ok: $out"
exit $fails
