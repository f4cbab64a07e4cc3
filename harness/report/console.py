"""Console renderings of wide tables: the essential columns, short cells, at most ``WIDTH`` characters.

The files (Markdown, CSV, HTML) keep every column at full width; what ``ckd run`` /
``ckd leaderboard`` / ``ckd claims`` print must not wrap on a terminal, so optional columns are
dropped (least useful first) and long text cells are cut with ``…`` until every line fits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from harness.report.tables import text_table

WIDTH = 120
NA_SPELLINGS = ("", "-")  # spellings of "no value" the CSV writers turn into ``n/a``

_SHORT = [  # (pattern, replacement): the long answers of stats.answer_text / the claims, in short
    (re.compile(r"undecided: about (\d+) more trajector(y|ies) would decide it"), r"undecided (+\1 traj)"),
    (re.compile(r"undecided: more than (\d+) more trajectories"), r"undecided (>\1 more traj)"),
    (re.compile(r"undecided: needs at least 2 trajectories"), "undecided (n < 2)"),
    (re.compile(r"equivalent within (±\S+ pp)"), r"equivalent \1"),
    (re.compile(r", by less than (±\S+ pp)"), r" (< \1)"),
    (re.compile(r"\(same runs: not tested\)"), "(same runs)"),
    (re.compile(r"same runs as (\S+): not tested"), r"same runs as \1"),
]


def short_answer(text: str) -> str:
    """``undecided: about 9 more trajectories would decide it`` -> ``undecided (+9 traj)``."""
    for pattern, repl in _SHORT:
        text = pattern.sub(repl, text)
    return text


def cut(cell: str, width: int) -> str:
    """``cell`` cut to ``width`` characters, ending in ``…`` when cut."""
    return cell if len(cell) <= width else cell[: max(width - 1, 1)] + "…"


def fit_table(
    headers: list[str],
    rows: list[list[str]],
    numeric: Callable[[str], bool],
    optional: Sequence[str] = (),
    width: int = WIDTH,
) -> str:
    """A fixed-width table no wider than ``width``: drop the ``optional`` headers in order
    while too wide, then cut the widest text (non-numeric) column's cells."""
    keep = list(range(len(headers)))

    def render() -> str:
        return text_table([headers[i] for i in keep], [[r[i] for i in keep] for r in rows], numeric)

    def too_wide(text: str) -> bool:
        return max(len(line) for line in text.splitlines()) > width

    for name in optional:
        if not too_wide(render()) or name not in headers:
            continue
        keep.remove(headers.index(name))
    rows = [list(r) for r in rows]
    while too_wide(text := render()):
        texts = [i for i in keep if not numeric(headers[i])]
        col = max(texts or keep, key=lambda i: max(len(headers[i]), *(len(r[i]) for r in rows)))
        cap = max(len(r[col]) for r in rows) - (max(len(line) for line in text.splitlines()) - width)
        cap = max(cap, len(headers[col]), 4)
        if all(len(r[col]) <= cap for r in rows):  # nothing left to cut here: give up on width
            return text
        rows = [[*r[:col], cut(r[col], cap), *r[col + 1 :]] for r in rows]
    return text
