#!/usr/bin/env bash
# The main job on an embedded default: set up (Debian packages, the Python reference environment),
# build, train a small MoE language model on tinyshakespeare with `moe train` (about 3 minutes on 2
# cores), then show `moe info` of the checkpoint and text generated from it with `moe run`.
# Usage: scripts/demo.sh [OUT]   (default OUT: out/shakespeare)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/build.sh --target moe_cli
exec bash scripts/train_demo.sh "$@"
