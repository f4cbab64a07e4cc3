"""Reading and compacting the results table at 10^3 / 10^4 / 10^5 rows (issue 22, point 3).

    python benchmarks/bench_results.py build [--rows 1000,10000,100000] [--before DIR] [--dir D]
    flock /tmp/bench.lock python benchmarks/bench_results.py time [--rows ...] [--before DIR] [--out F]

``build`` (outside the lock: 10^5 files take a while) writes, for each size and side, a store of
``n`` row files (``bench_scale.fake_row``) and their journal lines, as ``append`` leaves them.
``time`` (under the lock) times, each side in a fresh process importing ``harness`` from its
checkout (``--before DIR``: an older one, alternating with this one): the first full compaction,
the done-lookup cold (a fresh process) and after 1 and 100 new rows, ``find``, a compaction after
1 and after 100 new rows (and after 1 in a fresh process: the journal read cold), ``read()``.
The done-lookup is ``done_ids`` where the checkout has it (``ids`` before). The JSON records the
machine (``machine.machine_info``: float32 matmul GFLOP/s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
STORES = Path("/tmp/bench_results_stores")


def build(root: Path, n: int) -> None:
    """A store of ``n`` row files and the journal lines ``append`` writes for them."""
    from bench_scale import fake_row

    shutil.rmtree(root, ignore_errors=True)
    rows_dir = root / "results" / "rows"
    rows_dir.mkdir(parents=True)
    lines = []
    for i in range(n):
        data = (json.dumps(fake_row(i), sort_keys=True, default=str) + "\n").encode()
        (rows_dir / f"run{i:07d}.json").write_bytes(data)
        lines.append(f"+ {hashlib.sha256(data).hexdigest()} {len(data)} run{i:07d}\n")
    (root / "results" / "rows.journal").write_text("".join(lines))


def measure(root: str, n: int, cold_compact: bool = False) -> dict:
    """The timings on the store at ``root`` (this process's ``harness``)."""
    from bench_scale import fake_row

    from harness.results import ResultsTable

    table = ResultsTable(Path(root))
    done = getattr(table, "done_ids", table.ids)
    if cold_compact:  # a fresh process: one new row, then the compaction
        table.append(fake_row(n + 500_000))
        return {"compact_after_1_new_cold_s": _timed(table.compact)}
    out = {"compact_all_s": _timed(table.compact), "find_s": _timed(lambda: table.find(f"run{n // 2:07d}"))}
    out["done_lookup_cold_s"] = _timed(done)  # this process has not read the journal before
    for new in (1, 100):
        for k in range(new):
            table.append(fake_row(n + new * 1000 + k))
        out[f"done_lookup_after_{new}_new_s"] = _timed(done)
        out[f"compact_after_{new}_new_s"] = _timed(table.compact)
    out["read_s"] = _timed(table.read)
    return out


def _timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return round(time.perf_counter() - began, 4)


def run_in(checkout: Path, root: Path, n: int, cold: bool = False) -> dict:
    """``measure`` in a fresh process importing ``harness`` from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    code = f"import json, bench_results; print(json.dumps(bench_results.measure({str(root)!r}, {n}, {cold})))"
    got = subprocess.run([sys.executable, "-c", code], env=env, cwd=HERE, capture_output=True, text=True, check=True)
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["build", "time"])
    p.add_argument("--rows", default="1000,10000,100000")
    p.add_argument("--before", default=None, help="an older checkout, timed in the same sitting")
    p.add_argument("--dir", default=str(STORES))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_results_cpu2.json"))
    args = p.parse_args()
    sides = {"after": ROOT} | ({"before": Path(args.before)} if args.before else {})
    sizes = [int(x) for x in args.rows.split(",") if x]
    if args.mode == "build":
        for n in sizes:
            for side in sides:
                build(Path(args.dir) / f"{side}_{n}" / "bench", n)
        return
    from machine import machine_info

    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result |= {"machine_info": machine_info(threads=1), "checkouts": {k: str(v) for k, v in sides.items()}}
    for n in sizes:
        for side, checkout in sides.items():
            root = Path(args.dir) / f"{side}_{n}" / "bench"
            got = run_in(checkout, root, n) | run_in(checkout, root, n, cold=True)
            result.setdefault(side, {})[str(n)] = got
            print(f"{side:>6} {n:>7} rows: {got}", flush=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
