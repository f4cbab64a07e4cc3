"""Regret per selector pooled over the two paper-claims setups of issue 13 (README, "Student-aware
selection"), and each selector's per-trajectory regret difference to the paper's selector.

    .venv/bin/python benchmarks/proxy_selection/pooled.py [STORAGE]     (default runs/issue13)

Reads the stores of ``benchmarks/paper_claims/mnist1d.yaml`` and ``mnist1d_wide.yaml`` (run with
``storage=STORAGE``); the regret is the selector evaluation's (test accuracy of the pick against
the validation oracle's, pp).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from harness.report.selectors import evaluate_trajectory, ground_truth  # noqa: E402
from harness.report.stats import mean_interval  # noqa: E402
from harness.scoring.scores_file import read_all_scores  # noqa: E402
from harness.store import CheckpointStore  # noqa: E402

EXPERIMENTS = ("paper-claims-mnist1d", "paper-claims-mnist1d-wide")
SELECTORS = ("proxy_small", "proxy", "proxy_large", "paper", "ce", "kde", "accuracy", "last checkpoint (full)")


def regrets(storage: str) -> dict[str, list[float]]:
    """{selector: [regret pp per trajectory]} over both experiments."""
    out: dict[str, list[float]] = {s: [] for s in SELECTORS}
    for name in EXPERIMENTS:
        store = CheckpointStore(storage, name)
        scores = read_all_scores(store)
        for key, entries in sorted(ground_truth(store.read_results()).items(), key=lambda kv: str(kv[0])):
            judged = evaluate_trajectory(entries, scores[key[3]])["selectors"]
            for s in SELECTORS:
                out[s].append(100 * judged[s]["regret"])
    return out


def main() -> None:
    r = regrets(sys.argv[1] if len(sys.argv) > 1 else "runs/issue13")
    print("| selector | trajectories | regret pp [95% CI] | minus paper's, pp [95% CI] |\n|---|---:|---:|---:|")
    for s in SELECTORS:
        m, lo, hi = mean_interval(r[s])
        d, dlo, dhi = mean_interval([a - b for a, b in zip(r[s], r["paper"])])
        diff = "-" if s == "paper" else f"{d:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"
        print(f"| {s} | {len(r[s])} | {m:+.2f} [{lo:+.2f}, {hi:+.2f}] | {diff} |")


if __name__ == "__main__":
    main()
