"""Leaderboard: result rows -> one line per (dataset, teacher, student, teacher choice).

Selection policy (DESIGN.md section 4): inside each group the hyperparameters
(temperature, kd_weight, ensemble_reduce) are chosen by the mean *validation* accuracy over
seeds; the test accuracy of that setting is only reported. Only settings that ran the most
seeds in their group compete, so a setting with one lucky seed cannot beat one with five.
The reported epoch is the student's final epoch by default (``reported="final"``) or the epoch
of its best validation accuracy (``reported="best_val"``); validation and test accuracy are
always taken at the same epoch.

A board is a plain ``list[dict]`` (accuracies as fractions in [0, 1]); ``render`` turns it into
text, Markdown, CSV or HTML, and ``write_leaderboard`` writes the files next to the results.
"""
from __future__ import annotations

import csv
import html
import io
import logging
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable
from harness.config import ExperimentConfig

REPORTED = {
    # reported: (validation key used for selection, test key that is reported, words)
    "final": ("final_val_acc", "final_test_acc", "the student's final epoch"),
    "best_val": ("best_val_acc", "test_acc_at_best_val", "the student's best-validation epoch"),
}
FORMATS = ("text", "markdown", "csv", "html")
NA = "n/a"
EMPTY_MESSAGE = "No student results yet: run `ckd sweep CONFIG` (or `ckd run CONFIG`) to fill {where}."
HPARAMS = ("temperature", "kd_weight", "ensemble_reduce")
ENSEMBLE_KINDS = ("snapshot", "full_ensemble", "selected_ensemble")

logger = logging.getLogger(__name__)

# (dataset, teacher_arch, student_arch, teacher_choice) -> (T, kd_weight, reduce) -> rows
_Groups = dict[tuple, dict[tuple, list[dict]]]


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _std(xs: list[float]) -> float | None:
    """Sample standard deviation (n - 1); None for a single value (shown as n/a)."""
    if len(xs) < 2:
        return None
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _choice_kind(choice: str) -> str:
    return str(choice).split(":", 1)[0]


def _teacher_epochs(rows: list[dict]) -> str:
    """The teacher checkpoints the choice resolved to, compactly: ``30`` or ``30+50``;
    checkpoints from several trajectories are written ``<trajectory>@<epoch>``."""
    ckpts = {(c.get("trajectory"), c.get("epoch")) for r in rows for c in (r.get("teacher_checkpoints") or [])}
    if not ckpts:
        return ""
    trajs = sorted({str(t) for t, _ in ckpts})
    if len(trajs) == 1:
        return "+".join(str(e) for e in sorted({e for _, e in ckpts}, key=lambda e: (e is None, e)))
    # several trajectories (e.g. full_ensemble): drop their common name prefix, "s0@80+s1@80"
    prefix = os.path.commonprefix(trajs)
    prefix = prefix[: prefix.rfind("-") + 1] if "-" in prefix else ""
    return "+".join(f"{str(t)[len(prefix):]}@{e}" for t, e in sorted(ckpts, key=lambda c: (str(c[0]), c[1] or 0)))


def _group_rows(rows: Iterable[dict], val_key: str, test_key: str) -> tuple[_Groups, int]:
    """Plan: sort the rows into groups (one per leaderboard line) and, inside each, settings
    (one per hyperparameter tuple); also count the rows left out for missing metrics."""
    groups: _Groups = defaultdict(lambda: defaultdict(list))
    skipped = 0
    for r in rows:
        if _num(r.get(val_key)) is None or _num(r.get(test_key)) is None:
            skipped += 1
            continue
        choice = str(r.get("teacher_choice", "?"))
        is_none = _choice_kind(choice) == "none"
        gkey = (str(r.get("dataset", "?")), None if is_none else r.get("teacher_arch"), str(r.get("student_arch", "?")), choice)
        hkey = (None, None, None) if is_none else tuple(r.get(h) for h in HPARAMS)
        groups[gkey][hkey].append(r)
    return groups, skipped


def _choose_setting(settings: dict[tuple, list[dict]], val_key: str) -> tuple[tuple, list[dict]]:
    """The hyperparameter setting of one group with the best mean validation accuracy, among
    the settings that ran the most seeds; ties go to the smaller T, then kd_weight."""
    most = max(len(v) for v in settings.values())
    candidates = {h: v for h, v in settings.items() if len(v) == most}

    def rank(item: tuple[tuple, list[dict]]) -> tuple:
        h, v = item
        return (-_mean([float(r[val_key]) for r in v]), tuple((x is None, x if isinstance(x, (int, float)) else str(x)) for x in h))

    return sorted(candidates.items(), key=rank)[0]


def _present(chosen: list[dict], key: str) -> list[float]:
    """The numeric values of ``key`` in the rows (missing and NaN left out)."""
    return [v for v in (_num(r.get(key)) for r in chosen) if v is not None]


def _seed_key(seed: Any) -> tuple:
    """Sort key for seeds: numbers first (by value), then anything else (by text)."""
    return (not isinstance(seed, (int, float)), seed if isinstance(seed, (int, float)) else str(seed))


def _reported_epoch(reported: str, epochs: list[int], best_epochs: list[float]) -> str:
    """The reported epoch in words: ``final (10)`` or ``best val (mean 5.5)``."""
    if reported == "final":
        return f"final ({'/'.join(map(str, epochs))})" if epochs else "final"
    return f"best val (mean {_mean(best_epochs):.1f})" if best_epochs else "best val"


def _entry(gkey: tuple, settings: dict[tuple, list[dict]], reported: str, skipped: int) -> dict:
    """Compute one leaderboard line from the settings of its group (see ``build_leaderboard``)."""
    val_key, test_key, _ = REPORTED[reported]
    dataset, t_arch, s_arch, choice = gkey
    (t, w, red), chosen = _choose_setting(settings, val_key)
    tests = [float(r[test_key]) for r in chosen]
    vals = [float(r[val_key]) for r in chosen]
    t_test, t_val = _present(chosen, "teacher_test_acc"), _present(chosen, "teacher_val_acc")
    best_epochs = _present(chosen, "best_val_epoch")
    epochs = sorted({int(r["epochs"]) for r in chosen if _num(r.get("epochs")) is not None})
    return {
        "dataset": dataset,
        "teacher_arch": t_arch,
        "student_arch": s_arch,
        "teacher_choice": choice,
        "test_mean": _mean(tests),
        "test_std": _std(tests),
        "n": len(chosen),
        "seeds": sorted({r.get("seed") for r in chosen}, key=_seed_key),
        "val_mean": _mean(vals),
        "val_std": _std(vals),
        "teacher_test_acc": _mean(t_test) if t_test else None,
        "teacher_val_acc": _mean(t_val) if t_val else None,
        "temperature": t,
        "kd_weight": w,
        "ensemble_reduce": red,
        "settings_tried": len(settings),
        "teacher_epochs": _teacher_epochs(chosen),
        "epochs": epochs[0] if len(epochs) == 1 else (epochs or None),
        "reported": reported,
        "reported_epoch": _reported_epoch(reported, epochs, best_epochs),
        "best_val_epoch_mean": _mean(best_epochs) if best_epochs else None,
        "skipped_rows": skipped,
    }


def _record_deltas_and_sort(board: list[dict]) -> None:
    """Record: add ``delta_vs_none`` (against the no-teacher line of the same dataset and
    student, None without one) and sort by dataset, student, then test accuracy (best first)."""
    baseline = {(b["dataset"], b["student_arch"]): b["test_mean"] for b in board if _choice_kind(b["teacher_choice"]) == "none"}
    for b in board:
        base = baseline.get((b["dataset"], b["student_arch"]))
        b["delta_vs_none"] = None if base is None else b["test_mean"] - base
    board.sort(key=lambda b: (b["dataset"], b["student_arch"], -b["test_mean"], str(b["teacher_arch"]), b["teacher_choice"]))


def build_leaderboard(rows: Iterable[dict], reported: str = "final") -> list[dict]:
    """Aggregate result rows (``CheckpointStore.read_results()``) into leaderboard entries.

    Each entry: dataset, teacher_arch, student_arch, teacher_choice; ``test_mean``/``test_std``
    (student test accuracy over seeds at the reported epoch, std None when n == 1), ``n``,
    ``seeds``, ``val_mean``/``val_std`` (the selection criterion), ``teacher_test_acc`` /
    ``teacher_val_acc`` (mean accuracy of the resolved teacher or ensemble; None for ``none``),
    the chosen ``temperature``/``kd_weight``/``ensemble_reduce`` (None for ``none``),
    ``settings_tried``, ``teacher_epochs``, ``epochs``, ``reported_epoch`` (words),
    ``best_val_epoch_mean``, ``delta_vs_none`` and ``reported``. Sorted by dataset, student,
    then mean test accuracy (best first).
    """
    if reported not in REPORTED:
        raise ValueError(f"reported={reported!r}: choose one of {', '.join(REPORTED)}")
    val_key, test_key, _ = REPORTED[reported]
    groups, skipped = _group_rows(rows, val_key, test_key)
    board = [_entry(gkey, settings, reported, skipped) for gkey, settings in groups.items()]
    _record_deltas_and_sort(board)
    return board


# ---------------------------------------------------------------------------------------------
# rendering

def _pct(x: float | None, digits: int = 2) -> str:
    return NA if x is None else f"{100 * x:.{digits}f}"


def _signed_pct(x: float | None) -> str:
    return NA if x is None else f"{100 * x:+.2f}"


def _plain(x: Any) -> str:
    if x is None:
        return NA
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _is_ensemble(b: dict) -> bool:
    return _choice_kind(b["teacher_choice"]) in ENSEMBLE_KINDS or "+" in (b.get("teacher_epochs") or "")


def _hp(b: dict, key: str) -> str:
    return "-" if _choice_kind(b["teacher_choice"]) == "none" else _plain(b[key])


# (header, cell) for the human-readable formats
COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("dataset", lambda b: b["dataset"]),
    ("teacher", lambda b: b["teacher_arch"] or "-"),
    ("student", lambda b: b["student_arch"]),
    ("teacher choice", lambda b: b["teacher_choice"]),
    ("test acc % (mean ± std)", lambda b: f"{_pct(b['test_mean'])} ± {_pct(b['test_std']):>4}"),
    ("n", lambda b: str(b["n"])),
    ("Δ vs none", lambda b: _signed_pct(b["delta_vs_none"])),
    ("teacher acc %", lambda b: _pct(b["teacher_test_acc"])),
    ("T", lambda b: _hp(b, "temperature")),
    ("kd_weight", lambda b: _hp(b, "kd_weight")),
    ("reduce", lambda b: _hp(b, "ensemble_reduce") if _is_ensemble(b) else "-"),
    ("val acc %", lambda b: _pct(b["val_mean"])),
    ("teacher epochs", lambda b: b["teacher_epochs"] or "-"),
    ("epoch reported", lambda b: b["reported_epoch"]),
]

NUMERIC_COLUMNS = {"test acc % (mean ± std)", "n", "Δ vs none", "teacher acc %", "T", "kd_weight", "val acc %"}

# machine-readable columns for CSV (percentages, n/a for missing)
CSV_COLUMNS: list[tuple[str, Callable[[dict], Any]]] = [
    ("dataset", lambda b: b["dataset"]),
    ("teacher_arch", lambda b: b["teacher_arch"] or ""),
    ("student_arch", lambda b: b["student_arch"]),
    ("teacher_choice", lambda b: b["teacher_choice"]),
    ("test_acc_mean_pct", lambda b: _pct(b["test_mean"], 4)),
    ("test_acc_std_pct", lambda b: _pct(b["test_std"], 4)),
    ("n", lambda b: b["n"]),
    ("seeds", lambda b: " ".join(map(str, b["seeds"]))),
    ("delta_vs_none_pct", lambda b: _pct(b["delta_vs_none"], 4)),
    ("teacher_test_acc_pct", lambda b: _pct(b["teacher_test_acc"], 4)),
    ("teacher_val_acc_pct", lambda b: _pct(b["teacher_val_acc"], 4)),
    ("temperature", lambda b: _plain(b["temperature"])),
    ("kd_weight", lambda b: _plain(b["kd_weight"])),
    ("ensemble_reduce", lambda b: _plain(b["ensemble_reduce"])),
    ("val_acc_mean_pct", lambda b: _pct(b["val_mean"], 4)),
    ("val_acc_std_pct", lambda b: _pct(b["val_std"], 4)),
    ("settings_tried", lambda b: b["settings_tried"]),
    ("teacher_epochs", lambda b: b["teacher_epochs"]),
    ("reported", lambda b: b["reported"]),
    ("reported_epoch", lambda b: b["reported_epoch"]),
]


def policy_note(board: list[dict]) -> str:
    """The selection policy in words (header of every rendering)."""
    reported = board[0]["reported"] if board else "final"
    words = REPORTED[reported][2]
    seeds = sorted({b["n"] for b in board})
    skipped = board[0].get("skipped_rows", 0) if board else 0
    note = (
        f"Student test accuracy at {words}, mean ± sample std (n-1) over seeds (n per row; std n/a when n = 1). "
        "Hyperparameters (T, kd_weight, ensemble_reduce) chosen per row by mean validation accuracy "
        "at the same epoch, among the settings with the most seeds; test accuracy is only reported. "
        "Teacher acc: test accuracy of the resolved teacher checkpoint(s) or ensemble. "
        "Δ vs none: difference to the student trained without a teacher. "
        f"Seeds per row: {', '.join(map(str, seeds)) or '-'}."
    )
    if skipped:
        note += f" {skipped} result row(s) without the reported metrics were left out."
    return note


def _cells(board: list[dict]) -> tuple[list[str], list[list[str]]]:
    return [h for h, _ in COLUMNS], [[str(f(b)) for _, f in COLUMNS] for b in board]


def _wrap(text: str, width: int = 100) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def render_text(board: list[dict]) -> str:
    headers, rows = _cells(board)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = NUMERIC_COLUMNS

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(cells, widths, headers)).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n\n" + _wrap(policy_note(board)) + "\n"


def render_markdown(board: list[dict]) -> str:
    headers, rows = _cells(board)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["# Leaderboard", "", f"_Selection policy:_ {policy_note(board)}", ""]
    out.append("| " + " | ".join(esc(h) for h in headers) + " |")
    out.append("|" + "|".join("---:" if h in NUMERIC_COLUMNS else "---" for h in headers) + "|")
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def render_csv(board: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([h for h, _ in CSV_COLUMNS])
    for b in board:
        w.writerow([f(b) for _, f in CSV_COLUMNS])
    return buf.getvalue()


def render_html(board: list[dict]) -> str:
    headers, rows = _cells(board)
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>Leaderboard</title></head><body>',
        "<table>",
        "<caption>Leaderboard</caption>",
        "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead>",
        "<tbody>",
    ]
    out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
    out += ["</tbody>", "</table>", f"<p>{e(policy_note(board))}</p>", "</body></html>"]
    return "\n".join(out) + "\n"


_RENDERERS = {"text": render_text, "markdown": render_markdown, "csv": render_csv, "html": render_html}


def render(board: list[dict], fmt: str = "text", where: str = "results.jsonl") -> str:
    """The board as ``text`` (fixed-width), ``markdown``, ``csv`` or ``html``.

    An empty board renders as a message saying how to produce results (CSV: header only).
    """
    if fmt in ("md",):
        fmt = "markdown"
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown leaderboard format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not board:
        msg = EMPTY_MESSAGE.format(where=where)
        if fmt == "csv":
            return render_csv([])
        if fmt == "markdown":
            return f"# Leaderboard\n\n{msg}\n"
        if fmt == "html":
            return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Leaderboard</title></head><body>\n<p>{html.escape(msg)}</p>\n</body></html>\n'
        return msg + "\n"
    return _RENDERERS[fmt](board)


def leaderboard_paths(root: Path) -> dict[str, Path]:
    return {"markdown": root / "leaderboard.md", "csv": root / "leaderboard.csv", "html": root / "leaderboard.html"}


def write_leaderboard(cfg: ExperimentConfig, reported: str = "final") -> str:
    """Read the experiment's results, write ``leaderboard.{md,csv,html}`` (atomically) next to
    them and return the text table. With no results, nothing is written and the returned text
    says how to produce them."""
    from harness.store import CheckpointStore, atomic_write_bytes

    store = CheckpointStore(cfg.storage, cfg.name)
    board = build_leaderboard(store.read_results(), reported=reported)
    text = render(board, "text", where=str(store.results_jsonl))
    if not board:
        logger.info("[report] no results in %s; leaderboard not written", store.results_jsonl)
        return text
    for fmt, path in leaderboard_paths(store.root).items():
        atomic_write_bytes(path, render(board, fmt).encode("utf-8"))
    logger.info("[report] leaderboard written to %s/leaderboard.{md,csv,html}", store.root)
    return text
