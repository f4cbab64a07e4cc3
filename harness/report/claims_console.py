"""The paper's claims for a terminal (``ckd run`` / ``ckd claims``): one table per setting, the
essential columns and short answers, every line at most 120 characters (``console.fit_table``);
``claims.md`` / ``claims.csv`` keep every column."""

from __future__ import annotations

import re

from harness.report.claims import CLAIM_COLUMNS, CLAIM_TEXT
from harness.report.console import cut, fit_table, short_answer
from harness.report.stats import MARGIN
from harness.report.tables import wrap


def _paper_short(text: str) -> str:
    """``+0.30 pp (mean of 4 CIFAR-100 pairs, ..., Table 1)`` -> ``+0.30 pp (Table 1)``."""
    table = re.search(r"Table \d+", text)
    return text.split(" (")[0] + (f" ({table.group(0)})" if table else "")


CONSOLE_COLUMNS = [  # (header, cell, numeric): the console's, ``p (Holm)`` and ``paper`` dropped first
    ("claim", lambda r: r["claim"], False),
    ("choice vs reference", lambda r: f"{r['choice']} vs {r['ref']}", False),
    *(c for c in CLAIM_COLUMNS if c[0] in ("Δ pp [95% CI]", "p (Holm)")),
    ("n", next(f for h, f, _ in CLAIM_COLUMNS if h == "n traj×stud"), True),
    ("answer", lambda r: short_answer(re.sub(r"equivalent within ±\S+ pp:", "equivalent:", r["verdict"])), False),
    ("paper", lambda r: _paper_short(r["paper"]), False),
]


def render_claims_console(claims: list[dict], width: int = 120) -> str:
    """The claims for a terminal: one table per setting (dataset: teacher -> student), the
    essential columns and short answers, every line at most ``width`` characters."""
    groups: dict[str, list[dict]] = {}
    for r in claims:
        groups.setdefault(f"{r['dataset']}: {r['teacher_arch']} -> {r['student_arch']}", []).append(r)
    headers, numeric = [h for h, _, _ in CONSOLE_COLUMNS], {h for h, _, num in CONSOLE_COLUMNS if num}
    parts = [wrap("; ".join(f"{cid} = {text}" for cid, text in _claim_ids(claims)) + ".")]
    for heading, rows in groups.items():
        cells = [[f(r) for _, f, _ in CONSOLE_COLUMNS] for r in rows]
        parts += [
            "",
            cut(heading, width),
            fit_table(headers, cells, numeric.__contains__, ["p (Holm)", "paper"], width),
        ]
    tested = [r for r in claims if not r.get("same")]
    note = (
        "Δ = choice - reference in pp, mean over teacher trajectories with a 95% t interval; n: trajectories × "
        f"students per trajectory; answers Holm-corrected across the {len(tested)} tested rows (equivalent: within "
        f"±{100 * (tested[0]['margin'] if tested else MARGIN):.2f} pp); paper: the paper's CIFAR-100 difference. "
        "Every column: claims.md / claims.csv."
    )
    return "\n".join(parts) + "\n\n" + wrap(note) + "\n"


def _claim_ids(claims: list[dict]) -> list[tuple[str, str]]:
    """The claims in the table, ``(id, short text)``, for the console's legend line."""
    seen = dict.fromkeys(r["claim"] for r in claims)
    return [(cid, CLAIM_TEXT[cid].split(". ", 1)[1]) for cid in seen]
