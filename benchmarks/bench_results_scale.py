"""The results table at 10^4 rows on POSIX and on an object store (issue 25): seconds and requests.

    flock /tmp/bench.lock python benchmarks/bench_results_scale.py [--rows 10000] [--new 100] [--out F]

For each backend, ``ResultsTable`` on a local temp folder and ``ObjectResultsTable`` on moto's S3
API server started in a process of its own (``tests/s3_server.py``: real HTTP, the s3fs client a cluster
uses; moto answers far faster than S3 does, so the request counts carry over, the seconds do not),
times: ``n`` appends, the first (full) compaction, an incremental compaction after ``--new`` more
rows, ``done_ids()`` and ``read()``. Each phase reports seconds, seconds per row, and the S3
requests it sent (``harness.objects.REQUESTS``, reset per phase; 0 on POSIX) by operation and per
row. The JSON records the machine (``machine.machine_info``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


def phase(fn: Callable[[], object], rows: int) -> dict:
    """Run ``fn`` once: its seconds and the S3 requests it sent, in total and per row."""
    from harness.objects import REQUESTS

    REQUESTS.clear()
    began = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - began
    sent = sum(REQUESTS.values())
    return {
        "rows": rows,
        "seconds": round(seconds, 4),
        "seconds_per_row": round(seconds / max(rows, 1), 6),
        "requests": sent,
        "requests_per_row": round(sent / max(rows, 1), 4),
        "by_operation": dict(sorted(REQUESTS.items())),
        "result": out if isinstance(out, int) else len(out) if hasattr(out, "__len__") else None,
    }


def measure(table, n: int, new: int) -> dict:
    """The phases on ``table`` (empty): ``n`` appends, the first compaction, ``new`` more appends
    and the incremental compaction, ``done_ids``, ``read``."""
    from bench_scale import fake_row

    def append(lo: int, hi: int) -> Callable[[], int]:
        return lambda: sum(table.append(fake_row(i)) for i in range(lo, hi))

    out = {"append": phase(append(0, n), n), "compact_full": phase(table.compact, n)}
    out["append_more"] = phase(append(n, n + new), new)
    out["compact_incremental"] = phase(table.compact, new)
    out["done_ids"] = phase(table.done_ids, n + new)
    out["read"] = phase(table.read, n + new)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--new", type=int, default=100, help="rows appended before the incremental compaction")
    p.add_argument("--out", default=str(HERE / "results" / "bench_results_scale.json"))
    args = p.parse_args()
    from machine import machine_info

    from harness.objects import storage_location
    from harness.results import ResultsTable
    from harness.results_objects import ObjectResultsTable
    from tests.s3_server import spawn_s3_server

    backends = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends["posix"] = measure(ResultsTable(Path(tmp) / "bench"), args.rows, args.new)
    server = spawn_s3_server()
    try:
        root = storage_location(f"s3://{server.new_bucket()}/runs/bench")
        backends["objects"] = measure(ObjectResultsTable(root), args.rows, args.new)
    finally:
        server.stop()
    result = {"machine_info": machine_info(threads=1), "rows": args.rows, "new": args.new, "backends": backends}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'phase':<20} {'backend':<8} {'rows':>6} {'s':>9} {'s/row':>10} {'requests':>9} {'req/row':>8}")
    for name in backends["posix"]:
        for backend, got in backends.items():
            m = got[name]
            print(
                f"{name:<20} {backend:<8} {m['rows']:>6} {m['seconds']:>9.3f} {m['seconds_per_row']:>10.6f} "
                f"{m['requests']:>9} {m['requests_per_row']:>8.3f}"
            )


if __name__ == "__main__":
    main()
