#!/usr/bin/env bash
# README command 1: set up (if needed) and run the whole study on the embedded MNIST-1D data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ckd run configs/quickstart.yaml "$@"
