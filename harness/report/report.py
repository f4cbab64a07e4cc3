"""The report stage: leaderboard, claims, selector evaluation, plots and the HTML page, written
next to the results (``<storage>/<name>/``):

    leaderboard.{md,csv}   one row per (dataset, teacher, student, teacher choice), paired columns
    claims.{md,csv}        the paper's three claims with verdicts (when the grid holds what they need)
    selectors.{md,csv}     selector evaluation (when a trajectory has every checkpoint's students)
    plots/*.png            forest plot, accuracy vs teacher epoch, information plane, ensembles
    leaderboard.html       all of the above in one self-contained page
    leaderboard.tex        the leaderboard as a booktabs table (``ckd leaderboard --latex``: ``latex=True``)

``reported`` (``final`` | ``best_val``: the student epoch whose test accuracy counts) defaults to
the config's ``report.reported``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from harness.config import ExperimentConfig, experiment_hash
from harness.report.board import board_for, rows_of_config
from harness.report.claims import check_claims, render_claims
from harness.report.claims_console import render_claims_console
from harness.report.leaderboard import render
from harness.report.not_trained import not_trained, render_not_trained
from harness.report.selectors import evaluate_selectors, render_selectors
from harness.results import REASONS
from harness.scoring.scores_file import read_all_scores

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """Everything the report stage computed (also what W&B logs)."""

    board: list[dict]
    claims: list[dict] = field(default_factory=list)
    selectors: dict = field(default_factory=lambda: {"groups": {}, "skipped": []})
    plots: list[Path] = field(default_factory=list)
    text: str = ""
    rows: list[dict] = field(default_factory=list, repr=False)  # the inputs, for the plots
    set_aside: dict[str, int] = field(default_factory=dict)  # rows not counted, by reason (results.REASONS)
    scores: dict[str, dict] = field(default_factory=dict, repr=False)
    latex: Path | None = None  # leaderboard.tex, when asked for (``write_report(latex=True)``)
    not_trained: list[dict] = field(default_factory=list)  # failure records of the grid (report/not_trained.py)


def reported_of(cfg: ExperimentConfig, reported: str | None = None) -> str:
    """``reported`` when given, else the config's ``report.reported`` (``final`` | ``best_val``)."""
    return str(reported if reported is not None else cfg.report.reported)


def build_report(cfg: ExperimentConfig, reported: str | None = None) -> Report:
    """Compute the leaderboard, the claims and the selector evaluation (nothing written) from
    the valid row files of this config's runs (``rows_of_config``); when rows were left out, the
    text ends with one line saying how many and why."""
    from harness.store import CheckpointStore

    reported = reported_of(cfg, reported)

    store = CheckpointStore(cfg.storage, cfg.name)
    scan = store.results.scan()
    rows, foreign = rows_of_config(cfg, scan.rows)
    if cfg.sweep.until == "decided":  # an adaptive sweep reports its last round's design, nothing beyond
        from harness.adaptive_rounds import round_run_ids

        ids = round_run_ids(cfg)
        rows = [r for r in rows if r.get("run_id") in ids]
    scores = read_all_scores(store)
    board = board_for(cfg, rows, scores, reported)
    set_aside = store.results.set_aside_counts(scan)
    text = render(board, "console", where=str(store.results_jsonl))
    if note := not_counted_note(set_aside, foreign, store.results.rejected_dir):
        logger.warning(f"[report] {note}")
        text += note + "\n"
    rep = Report(board=board, text=text, rows=rows, scores=scores, set_aside={**set_aside, "other_config": foreign})
    rep.not_trained = not_trained(cfg)
    if rep.not_trained:
        rep.text = (rep.text if board else "") + "\n" + render_not_trained(rep.not_trained, "console")
    if board:
        rep.claims = check_claims(board, float(cfg.report.alpha))
        rep.selectors = evaluate_selectors(rows, scores, reported)
    return rep


def not_counted_note(set_aside: dict[str, int], foreign: int, rejected_dir: Path) -> str:
    """One line: how many rows the report did not count and why ('' when none)."""
    parts = [f"{n} {REASONS[reason]}" for reason, n in sorted(set_aside.items())]
    if parts:
        parts[-1] += f" (set aside in {rejected_dir})"
    if foreign:
        parts.append(f"{foreign} of another config (run fields that do not hash to their run id under this config)")
    return f"Not counted: {'; '.join(parts)}." if parts else ""


def _write(path: Path, text: str) -> None:
    from harness.fileio import atomic_write_bytes  # here: fileio imports torch, the report tables need not

    atomic_write_bytes(path, text.encode("utf-8"))


def write_claims(root: Path, claims: list[dict]) -> None:
    """``claims.{md,csv}`` under ``root``: the one writer of the claims files (``write_report``
    and ``ckd claims``)."""
    _write(root / "claims.md", render_claims(claims, "markdown"))
    _write(root / "claims.csv", render_claims(claims, "csv"))


def write_report(cfg: ExperimentConfig, reported: str | None = None, plots: bool = True, latex: bool = False) -> Report:
    """Build the report and write its files (see the module doc; ``latex``: also
    ``leaderboard.tex``); with no results nothing is written and ``text`` says how to produce them."""
    from harness.report.html import report_page
    from harness.store import CheckpointStore

    reported = reported_of(cfg, reported)

    root = CheckpointStore(cfg.storage, cfg.name).root
    rep = build_report(cfg, reported)
    missing_md = render_not_trained(rep.not_trained, "markdown")
    if rep.not_trained or (root / "not_trained.csv").is_file():
        _write(root / "not_trained.csv", render_not_trained(rep.not_trained, "csv"))
    if not rep.board:
        if rep.not_trained:
            _write(root / "leaderboard.md", "No student results.\n\n" + missing_md)
            logger.info("[report] no student results; leaderboard.md lists the runs that did not train")
        else:
            logger.info("[report] no student results yet; nothing written")
        return rep
    _write(root / "leaderboard.md", render(rep.board, "markdown") + ("\n" + missing_md if missing_md else ""))
    _write(root / "leaderboard.csv", render(rep.board, "csv"))
    if latex:
        from harness.report.latex import write_latex

        rep.latex = write_latex(root, rep.board)
    write_claims(root, rep.claims)
    _write(root / "selectors.md", render_selectors(rep.selectors, "markdown"))
    _write(root / "selectors.csv", render_selectors(rep.selectors, "csv"))
    adaptive = _adaptive(cfg, root, rep, plots)
    if plots:
        rep.plots = _plots(cfg, rep, reported) + rep.plots
    page = report_page(
        rep.board,
        rep.claims,
        rep.selectors,
        rep.plots,
        title="ckd-harness report",
        experiment=str(cfg.name),
        config_hash=experiment_hash(cfg),
        not_trained=rep.not_trained,
        cfg=cfg,  # the Run section: resolved config, commit, versions, device time of rep.rows
        rows=rep.rows,
        adaptive=adaptive,
    )
    _write(root / "leaderboard.html", page)
    logger.info("[report] written to %s: leaderboard.{md,csv,html}, claims.{md,csv}, selectors.{md,csv}", root)
    return rep


def _adaptive(cfg: ExperimentConfig, root: Path, rep: Report, plots: bool = True) -> str | None:
    """An adaptive sweep's rounds (harness/adaptive.py): adaptive.{md,csv}, the intervals plot,
    the rounds table after the leaderboard text; the HTML fragment (None: not adaptive)."""
    from harness.report.adaptive_report import load_rounds, render_adaptive, write_adaptive

    journal = load_rounds(root) if cfg.sweep.until == "decided" else None
    if not journal:
        return None
    rep.plots = [p for p in write_adaptive(root, journal, plots) if p.suffix == ".png"]
    rep.text += (
        "\nThe leaderboard's p-values are those of one fixed look; the adaptive sweep's answers, "
        "which keep their error rates over its looks, are these:\n" + render_adaptive(journal, "text") + "\n"
    )
    return render_adaptive(journal, "html")


def _plots(cfg: ExperimentConfig, rep: Report, reported: str) -> list[Path]:
    from harness.report.plots import draw_plots
    from harness.store import CheckpointStore

    try:  # from the report's own rows, scores and board: nothing read or computed twice
        return draw_plots(
            CheckpointStore(cfg.storage, cfg.name), rep.rows, rep.scores, rep.board, reported, rep.selectors
        )
    except Exception as e:  # a plot must not hide the tables
        logger.warning("[plot] skipped: %s: %s", type(e).__name__, e)
        return []


def claims_text(rep: Report) -> str:
    """The claims table as text, or '' when the results hold no claim's comparison."""
    return render_claims_console(rep.claims) if rep.claims else ""
