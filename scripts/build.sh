#!/usr/bin/env bash
# Set up (Debian packages, the Python reference environment: scripts/setup.sh) and build into build/
# quietly. Arguments are passed to `cmake --build` (e.g. --target moe_cli). Used by the demos.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
venv=${MOE_VENV:-$HOME/.cache/moe-venv}
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOE_PYTHON="$venv/bin/python" >/dev/null
cmake --build build -j"$(nproc)" "$@" >/dev/null
