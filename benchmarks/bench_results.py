"""Reading and compacting the results table at 10^3 / 10^4 / 10^5 rows (issue 22, point 3).

    python benchmarks/bench_results.py [--rows 1000,10000,100000] [--before /path/to/older/checkout]
                                       [--out results.json]

For each size: a store of ``n`` row files (``bench_scale.fake_row``), compacted once; then the
seconds of a compaction after 1 and after 100 new rows, of the done-lookup ``ids()`` and of
``read()``. ``--before DIR`` times a checkout of an older version (``PYTHONPATH=DIR``) in the
same sitting, alternating sizes, for the before/after table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(n: int) -> dict:
    """The timings at ``n`` rows present (this process's ``harness``)."""
    from bench_scale import fake_row

    from harness.results import ResultsTable

    with tempfile.TemporaryDirectory() as d:
        table = ResultsTable(Path(d) / "bench")
        table.rows_dir.mkdir(parents=True)
        for i in range(n):
            (table.rows_dir / f"run{i:07d}.json").write_text(json.dumps(fake_row(i), sort_keys=True) + "\n")
        out = {"compact_all_s": _timed(table.compact)}
        for new in (1, 100):
            for k in range(new):
                table.append(fake_row(n + new * 1000 + k))
            out[f"compact_after_{new}_new_s"] = _timed(table.compact)
        out["ids_s"] = _timed(table.ids)
        out["read_s"] = _timed(table.read)
    return out


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return round(time.perf_counter() - began, 4)


def run_in(checkout: Path, n: int) -> dict:
    """``measure(n)`` in a fresh process importing ``harness`` from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    code = f"import json, bench_results; print(json.dumps(bench_results.measure({n})))"
    got = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=Path(__file__).parent, capture_output=True, text=True, check=True
    )
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1000,10000,100000")
    p.add_argument("--before", default=None, help="an older checkout, timed in the same sitting")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_results_cpu2.json"))
    args = p.parse_args()
    sides = {"after": ROOT} | ({"before": Path(args.before)} if args.before else {})
    result: dict = {"machine": f"{os.cpu_count()} CPUs", "checkouts": {k: str(v) for k, v in sides.items()}}
    for n in [int(x) for x in args.rows.split(",") if x]:
        for side, checkout in sides.items():
            got = run_in(checkout, n)
            result.setdefault(side, {})[str(n)] = got
            print(f"{side:>6} {n:>7} rows: {got}", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
