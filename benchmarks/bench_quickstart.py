"""The quickstart's stage times (issue 23, point 3): ``ckd run configs/quickstart.yaml`` end to end.

    python benchmarks/bench_quickstart.py [--code DIR | --runs before=OLD after=NEW] [--out FILE]
                                          [--config FILE] [overrides...]

Each run: a fresh store (a temporary folder), ``python -m harness.cli run <config> storage=<tmp>
[overrides]`` with the checkout first on ``PYTHONPATH`` and its working folder outside any checkout
(``python -m`` would put that folder first on ``sys.path``), console captured line by line. Every
line is stamped with the seconds since the command started (when this process read it), and
the stages are the first / last lines that match (``EVENTS``):

- ``ray_up``: the cluster's description line (``[cluster] ...``);
- ``teacher_done``: each ``[teachers] <name>: finished`` line (per trajectory), ``teachers_done``
  the last of them;
- ``scores``: each ``[score] <name>: selected ...`` line (a scores file written), ``last_score``;
- ``sweep_done``: the first line after the sweep (``[sweep] ... Tune experiment`` totals, or the
  report's first line when there is none); ``report``: ``[report] written to`` (or
  ``no student results``: ``report_written`` false);
- ``exit``: the command's wall time and exit status (3: some runs did not train, e.g. a degenerate
  selector; recorded, not an error); ``stage_times``: the harness's own ``[run] stage times``.

``--runs`` runs several checkouts one after another in one sitting (``label=DIR`` each). Run it
under ``flock /tmp/bench.lock``; every JSON records the machine's matmul rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # benchmarks.machine; never ahead of a --code / PYTHONPATH harness

# (event, pattern): every matching line is kept with its time; ``first``/``last`` picked later
EVENTS = {
    "ray_up": re.compile(r"\[cluster\] .*Ray cluster"),
    "teacher_done": re.compile(r"\[teachers\] (\S+): finished"),
    "scores": re.compile(r"\[score\] (\S+): selected "),
    "sweep_line": re.compile(r"\[sweep\] "),
    "report": re.compile(r"\[report\] (written to|no student results)"),
    "stage_times": re.compile(r"\[run\] stage times: (.*)"),
}
STAGE_TIME = re.compile(r"^(.+?) ([\d.]+)s$")  # "score (after teachers) 53.6s"


def parse_log(lines: list[tuple[float, str]]) -> dict:
    """Stage times from ``(seconds, line)`` pairs of a ``ckd run`` console."""
    hits: dict[str, list[tuple[float, str]]] = {k: [] for k in EVENTS}
    for t, line in lines:
        for name, pattern in EVENTS.items():
            m = pattern.search(line)
            if m:
                hits[name].append((t, m.group(1) if m.groups() else line))
    out: dict = {}
    if hits["ray_up"]:
        out["ray_up_s"] = round(hits["ray_up"][0][0], 1)
    out["teacher_done_s"] = {name: round(t, 1) for t, name in hits["teacher_done"]}
    if hits["teacher_done"]:
        out["teachers_done_s"] = round(hits["teacher_done"][-1][0], 1)
    out["scores_s"] = {name: round(t, 1) for t, name in hits["scores"]}
    if hits["scores"]:
        out["last_score_s"] = round(hits["scores"][-1][0], 1)
    if hits["report"]:
        out["report_s"] = round(hits["report"][-1][0], 1)
        out["report_written"] = hits["report"][-1][1] == "written to"  # else: no student results counted
    after_scores = [t for t, _ in hits["sweep_line"] if t >= out.get("last_score_s", 0.0)]
    if after_scores:  # the sweep's last line: its end (its totals, or the last trial's line)
        out["sweep_done_s"] = round(after_scores[-1], 1)
    if hits["stage_times"]:
        text = hits["stage_times"][-1][1]
        parts = (STAGE_TIME.match(part.strip()) for part in text.split(";")[0].split(","))
        out["stage_times_s"] = {m.group(1): float(m.group(2)) for m in parts if m}
        total = re.search(r"total ([\d.]+)s", text)
        out["harness_total_s"] = float(total.group(1)) if total else None
    return out


def run_once(code: Path, config: Path, overrides: list[str], work: Path, label: str) -> dict:
    """One ``ckd run`` with ``code``'s harness on a fresh store: wall time and stage times."""
    store = work / f"store-{label}"
    shutil.rmtree(store, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(code), "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(config), f"storage={store}", *overrides]
    lines: list[tuple[float, str]] = []
    began = time.perf_counter()
    with subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append((time.perf_counter() - began, line.rstrip("\n")))
        rc = p.wait()
    wall = time.perf_counter() - began
    (work / f"{label}.log").write_text("".join(f"{t:8.2f} {s}\n" for t, s in lines))
    if rc not in (0, 3) or not any(EVENTS["stage_times"].search(s) for _, s in lines[-80:]):  # 3: runs left out
        tail = "\n".join(s for _, s in lines[-40:])
        raise SystemExit(f"{label}: ckd run exited {rc} (log {work / f'{label}.log'}):\n{tail}")
    shutil.rmtree(store, ignore_errors=True)
    return {"code": str(code), "exit_s": round(wall, 1), "rc": rc, **parse_log(lines)}


def parse_runs(items: list[str] | None, code: str) -> dict[str, Path]:
    """``label=DIR`` pairs (``--runs``), else ``{"after": --code}``."""
    if not items:
        return {"after": Path(code).resolve()}
    out = {}
    for item in items:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"--runs wants label=DIR, got {item!r}")
        out[label] = Path(folder).resolve()
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="default: each checkout's own configs/quickstart.yaml")
    p.add_argument("--code", default=str(ROOT), help="the checkout to run (default: this one)")
    p.add_argument("--runs", nargs="+", metavar="LABEL=DIR", help="several checkouts, one after another")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.add_argument("--keep-logs", default=None, help="copy the consoles (stamped) into this folder")
    p.add_argument("overrides", nargs="*", help="dotlist overrides passed to ckd run")
    args = p.parse_args(argv)
    from benchmarks.machine import machine_info

    runs = parse_runs(args.runs, args.code)
    report: dict = {"config": args.config, "overrides": args.overrides, "machine_info": machine_info(1)}
    report["cpus"] = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="bench-quickstart-") as d:
        work = Path(d)
        for label, code in runs.items():
            config = Path(args.config).resolve() if args.config else Path(code) / "configs" / "quickstart.yaml"
            report[label] = run_once(code, config, args.overrides, work, label)
            report[label]["config"] = str(config)
            print(label, json.dumps(report[label]), flush=True)
            if args.keep_logs:
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                shutil.copy(work / f"{label}.log", Path(args.keep_logs) / f"{label}.log")
    report["machine_info_after"] = machine_info(1)  # the rate at the end of the sitting too
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
