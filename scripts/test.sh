#!/usr/bin/env bash
# README command 2: set up (if needed), lint (ruff) and run the test suite (offline, CPU, a few minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export WANDB_MODE=disabled WANDB_SILENT=true
# lint and format first (rules in pyproject.toml): a finding fails the run before any test starts
.venv/bin/ruff check --quiet . || { echo "ruff check found problems (fix them, or run: .venv/bin/ruff check --fix .)" >&2; exit 1; }
.venv/bin/ruff format --check --quiet . || { echo "ruff format: files above need formatting (run: .venv/bin/ruff format .)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
