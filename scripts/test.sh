#!/usr/bin/env bash
# The test command: set up, build, run every test; then the same under ASan+UBSan; then the fuzzers
# for a bounded time. Build folders: build/, build-san/, build-fuzz/. MOE_TEST_QUICK=1 skips the
# sanitizer and fuzz builds.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
venv=${MOE_VENV:-$HOME/.cache/moe-venv}
venv5=${MOE_VENV5:-$HOME/.cache/moe-venv-tf5}
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_WERROR=ON -DMOE_PYTHON="$venv/bin/python" -DMOE_PYTHON5="$venv5/bin/python" >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
if [ "${MOE_TEST_QUICK:-0}" != 1 ]; then
  cmake -S . -B build-san -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_SANITIZE=ON -DMOE_WERROR=ON -DMOE_PYTHON="$venv/bin/python" -DMOE_PYTHON5="$venv5/bin/python" >/dev/null
  cmake --build build-san -j"$jobs"
  (cd build-san && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MOE_TEST_SANITIZED=1 ctest --output-on-failure -j"$jobs")
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DMOE_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j"$jobs"
  (cd build-fuzz && ctest --output-on-failure -R '^fuzz\.')
fi
echo "all tests passed"
