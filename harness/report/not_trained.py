"""The runs of the grid that did not train: skipped before launch or failed, with the reason.

Read from the failure records (``harness/failures.py``) of this config's grid; shown on the
console after the leaderboard, in ``leaderboard.md``, ``not_trained.csv`` and the HTML page, so a
report never hides a hole in the grid.
"""

from __future__ import annotations

import csv
import io

from harness.config import ExperimentConfig
from harness.failures import read_failures

HEADERS = ["status", "run", "reason", "log"]
CONSOLE_LIMIT = 10  # lines on the console; the files list every run
CONSOLE_WIDTH = 120  # a line per run fits the console; the files keep the whole reason


def not_trained(cfg: ExperimentConfig) -> list[dict]:
    """The failure records of this config's grid (skipped first, then failed)."""
    from harness.experiment import open_store
    from harness.sweep import sweep_runs

    root = open_store(cfg).root
    entries = read_failures(root, [r.to_dict() for r in sweep_runs(cfg)])
    for e in entries:  # where the traceback is, as the console shows it (the files keep the relative path)
        e["where"] = str(root / e["log"]) if e.get("log") else ""
    return entries


def summary(entries: list[dict]) -> str:
    """``2 runs did not train (1 skipped, 1 failed)``, or '' when every run trained."""
    if not entries:
        return ""
    skipped = sum(e["status"] == "skipped" for e in entries)
    return f"{len(entries)} run(s) did not train ({skipped} skipped, {len(entries) - skipped} failed)"


def cells(entries: list[dict]) -> list[list[str]]:
    return [[e["status"], e["label"], e["reason"], e.get("log") or ""] for e in entries]


def render_not_trained(entries: list[dict], fmt: str) -> str:
    """``console`` (at most ``CONSOLE_LIMIT`` lines), ``markdown`` or ``csv``; '' when none."""
    if not entries:
        return "" if fmt != "csv" else ",".join(HEADERS) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADERS)
        writer.writerows(cells(entries))
        return out.getvalue()
    if fmt == "markdown":
        lines = [f"## Runs that did not train\n\n{summary(entries)}.\n", "| " + " | ".join(HEADERS) + " |"]
        lines.append("|" + "---|" * len(HEADERS))
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells(entries)]
        return "\n".join(lines) + "\n"
    folder = next((e["where"].rsplit("/", 1)[0] for e in entries if e.get("where")), "")
    lines = [f"{summary(entries)}" + (f"; tracebacks in {folder}/:" if folder else ":")]
    for e in entries[:CONSOLE_LIMIT]:
        log = f" [{e['log'].rsplit('/', 1)[-1]}]" if e.get("log") else ""
        head = f"  {e['status']:7s} {e['label']}: "
        room = CONSOLE_WIDTH - len(head) - len(log)
        reason = e["reason"] if len(e["reason"]) <= room else e["reason"][: max(room - 1, 10)] + "…"
        lines.append(head + reason + log)
    if len(entries) > CONSOLE_LIMIT:
        lines.append(f"  ... {len(entries) - CONSOLE_LIMIT} more in not_trained.csv")
    return "\n".join(lines) + "\n"


def html_section(entries: list[dict]) -> list[str]:
    from html import escape

    from harness.report.tables import html_table

    return [
        "<h2>Runs that did not train</h2>",
        f"<p>{escape(summary(entries))}: skipped before launch (their teacher choice does not resolve) or "
        "failed while training (traceback in the experiment folder's log).</p>",
        html_table("not-trained", HEADERS, cells(entries), lambda _: False),
    ]
