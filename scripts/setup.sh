#!/usr/bin/env bash
# Install what moe needs to build and test: Debian packages, and the Python reference tools in a
# virtual environment outside the clone (MOE_VENV, default ~/.cache/moe-venv) so reruns reuse it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pkgs="build-essential cmake pkg-config clang libclang-rt-14-dev libomp-dev libcjson-dev libpcre2-dev liburing-dev libopenblas-dev libpng-dev libutf8proc-dev libmicrohttpd-dev libopenmpi-dev openmpi-bin python3-venv"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
venv=${MOE_VENV:-$HOME/.cache/moe-venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.moe-requirements"
if ! cmp -s "$here/requirements.txt" "$stamp"; then
  echo "setup: installing Python references into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$stamp"
fi
# The transformers 5.x overlay: its own site-packages first, then the main environment's.
venv5=${MOE_VENV5:-$HOME/.cache/moe-venv-tf5}
if [ ! -x "$venv5/bin/python" ]; then
  echo "setup: creating $venv5"
  python3 -m venv "$venv5"
fi
base_sp=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
over_sp=$("$venv5/bin/python" -c 'import site; print(site.getsitepackages()[0])')
echo "$base_sp" >"$over_sp/moe-base.pth"
stamp5="$venv5/.moe-requirements"
if ! cat "$here/requirements.txt" "$here/requirements-tf5.txt" | cmp -s - "$stamp5"; then
  echo "setup: installing transformers 5.x into $venv5"
  "$venv5/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-tf5.txt"
  cat "$here/requirements.txt" "$here/requirements-tf5.txt" >"$stamp5"
fi
echo "setup: ok ($venv, $venv5)"
