#!/usr/bin/env bash
# Create .venv if missing and install the harness (+ test tools) into it. Safe to re-run: it
# reinstalls only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# torch/torchvision are pinned no newer than 2.14.1 / 0.29.1 (override for another platform,
# e.g. TORCH_SPEC="torch==2.9.1 torchvision==0.24.1" on aarch64).
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .venv/.ckd-installed 2>/dev/null || true)" != "$want" ]; then
  echo "[setup] installing $TORCH_SPEC and the harness (first time: a few minutes)"
  # pip's "Location ... is ignored" lines come from this machine's pip config, not from us
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q --disable-pip-version-check $TORCH_SPEC 2> >(grep -v "WARNING: Location" >&2)
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2> >(grep -v "WARNING: Location" >&2)
  echo "$want" > .venv/.ckd-installed
fi
