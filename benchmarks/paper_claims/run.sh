#!/usr/bin/env bash
# Run one paper-claims benchmark through the real command and keep its tables and plots:
#   bash benchmarks/paper_claims/run.sh benchmarks/paper_claims/mnist1d.yaml [key=value ...]
# The store goes to <storage>/<name> (runs/, git-ignored, unless storage=... says otherwise); leaderboard/claims/selectors .md/.csv, leaderboard.html,
# plots/*.png, the ckd log and the wall time go to benchmarks/results/paper_claims/<experiment>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
config="$1"; shift
read -r name root < <(.venv/bin/python -c "import sys; from pathlib import Path; from harness.config_loading import load_config
c = load_config(sys.argv[1], sys.argv[2:]); print(c.name, Path(c.storage) / c.name)" "$config" "$@")
out="benchmarks/results/paper_claims/$name"
mkdir -p "$out"
machine=$(.venv/bin/python benchmarks/machine.py)  # the machine and its measured matmul rate, before the run
start=$(date +%s)
.venv/bin/ckd run --progress lines "$config" "$@" | tee "$out/ckd_run_stdout.txt"
wall=$(( $(date +%s) - start ))
cp "$root"/leaderboard.{md,csv,html} "$root"/claims.{md,csv} "$root"/selectors.{md,csv} "$out"/
mkdir -p "$out/plots" && cp "$root"/plots/*.png "$out/plots/"
cp "$root/logs/run.log" "$out/run.log" 2>/dev/null || true
if [ -f "$root/adaptive/rounds.json" ]; then  # an adaptive sweep (sweep.until=decided): its rounds
  cp "$root"/adaptive.{md,csv} "$root/adaptive/rounds.json" "$out"/
fi
printf '{"config": "%s", "overrides": "%s", "wall_s": %d, "cpus": %d, "date": "%s", "machine_info": %s}\n' \
  "$config" "$*" "$wall" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$machine" > "$out/wall_time.json"
echo "wall time: ${wall}s; results in $out"
