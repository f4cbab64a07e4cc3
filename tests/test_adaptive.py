"""Adaptive sweeps (``sweep.until=decided``, harness/adaptive.py) on the real path, in this process:
rounds that grow the design, a journal that resumes, a dry-run that shows the next round, the report.

The tiny quickstart (2 trajectories of 4 epochs, 2-epoch students) decides ``fraction:0.5`` vs
``full`` within a margin of 0.01 pp only by luck, so the sweep runs until its teacher-epoch budget
(4 trajectories) has no room for another round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import adaptive
from harness.adaptive_rounds import round_config, student_seeds_for, teacher_seeds_for
from harness.config import ConfigError, seed_list
from harness.config_loading import load_config
from harness.pipeline import run_pipeline
from harness.runs import teacher_seed_rule
from harness.sweep import sweep_runs
from tests.helpers import QUICKSTART, tiny_overrides

ADAPTIVE = {
    "sweep.until": "decided",
    "sweep.budget.teacher_epochs": 16,
    "sweep.budget.student_epochs": 1000,
    "report.compare": "[fraction:0.5]",
    "report.equivalence_margin": 0.01,
    "sweep.teacher_choices": "[none,full,fraction:0.5]",
    "sweep.seeds": "[0,1]",
    "cluster.mode": "local",
}


def _cfg(storage: Path, **extra: object):
    return load_config(QUICKSTART, tiny_overrides(storage, **{**ADAPTIVE, **extra}))


def test_an_adaptive_config_is_checked_before_compute(tmp_path):
    base = tiny_overrides(tmp_path, **{"sweep.until": "decided"})
    with pytest.raises(ConfigError, match="sweep.budget"):
        load_config(QUICKSTART, base)
    with pytest.raises(ConfigError, match="both sweep.budget.teacher_epochs and sweep.budget.student_epochs"):
        load_config(QUICKSTART, [*base, "sweep.budget.teacher_epochs=16"])
    with pytest.raises(ConfigError, match="sweep.seeds"):
        load_config(QUICKSTART, [*base, "sweep.budget.device_hours=1", "sweep.seeds=[0,1,2]"])
    with pytest.raises(ConfigError, match="report.compare"):
        load_config(QUICKSTART, tiny_overrides(tmp_path, **{"report.compare": "[fraction:0.25]"}))


@pytest.mark.parametrize("design", [(2, 1), (3, 1), (3, 2), (5, 3)])
def test_each_student_seed_keeps_its_trajectory_as_the_rounds_grow(tmp_path, design):
    cfg = _cfg(tmp_path)
    n, m = design
    rc = round_config(cfg, n, m)
    rule, seeds = teacher_seed_rule(rc), seed_list(rc.sweep)
    assert list(seed_list(rc.teacher)) == teacher_seeds_for(cfg, n) == list(range(n))
    owner = {seeds[i]: rule(i) for i in range(len(seeds))}
    assert owner == {t + 1000 * j: t for t in range(n) for j in range(m)}
    smaller = set(sweep_runs(round_config(cfg, 2, 1)))
    assert smaller <= set(sweep_runs(rc))  # a later round's grid holds every earlier run, unchanged
    assert student_seeds_for(2, 1) == [0, 1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One adaptive run to its end, uninterrupted."""
    cfg = _cfg(tmp_path_factory.mktemp("straight"))
    text = run_pipeline(cfg, plots=True)
    return cfg, text, adaptive.load_journal(cfg)


def _answers(journal: dict) -> list:
    """What a journal decided, without the measured hours (wall time differs between runs)."""
    out = []
    for rnd in journal["rounds"]:
        looks = {k: {f: v for f, v in lk.items()} for k, lk in rnd.get("looks", {}).items()}
        spent = {k: v for k, v in (rnd.get("spent") or {}).items() if k != "device_hours"}
        out.append((rnd["round"], rnd["n"], rnd["m"], rnd["status"], spent, looks))
    return out


def test_rounds_grow_until_the_budget_is_spent_and_the_report_shows_them(straight):
    cfg, text, journal = straight
    rounds = journal["rounds"]
    assert len(rounds) >= 2 and all(r["status"] == "done" for r in rounds)
    assert [(r["n"], r["m"]) for r in rounds][0] == (2, 1)
    assert all(b["n"] * b["m"] > a["n"] * a["m"] for a, b in zip(rounds, rounds[1:], strict=False))
    assert rounds[-1]["spent"]["teacher_epochs"] <= 16
    assert journal["stopped"]["reason"] in ("budget", "decided", "information")
    assert journal["design"]["comparisons"] == 1 and journal["design"]["alpha_each"] == pytest.approx(0.05)
    looks = [r["looks"]["fraction:0.5 vs full"] for r in rounds if r.get("looks")]
    assert [lk["n"] for lk in looks] == [r["n"] for r in rounds][: len(looks)]
    assert looks[-1]["fraction"] == 1.0 or journal["stopped"]["reason"] == "decided"
    root = adaptive.journal_path(cfg).parent.parent
    assert (root / "adaptive.md").is_file() and (root / "plots" / "adaptive_intervals.png").is_file()
    assert "adaptive sweep" in text and "fraction:0.5 vs full" in text
    assert "s-adaptive" in (root / "leaderboard.html").read_text()


def test_a_rerun_of_a_finished_adaptive_sweep_trains_nothing(straight, logs):
    cfg, _, journal = straight
    rows = len(list((adaptive.journal_path(cfg).parent.parent / "results").rglob("*.json")))
    run_pipeline(cfg, plots=False)
    assert adaptive.load_journal(cfg) == journal
    assert len(list((adaptive.journal_path(cfg).parent.parent / "results").rglob("*.json"))) == rows
    assert "[adaptive] stopped" in logs.text


def test_a_round_killed_part_way_resumes_to_the_same_answers(straight, tmp_path, capsys):
    from harness.pipeline import STAGES

    cfg = _cfg(tmp_path)
    calls = []

    def crash_in_round_one(round_cfg):
        calls.append(len(seed_list(round_cfg.teacher)))
        if len(calls) == 2:
            STAGES["teachers"].run(round_cfg)  # part of the round, then the process dies
            raise KeyboardInterrupt
        for name in ("teachers", "score", "sweep"):
            STAGES[name].run(round_cfg, compact=False)

    with pytest.raises(KeyboardInterrupt):
        adaptive.run_rounds(cfg, crash_in_round_one)
    journal = adaptive.load_journal(cfg)
    assert [r["status"] for r in journal["rounds"]] == ["done", "planned"]
    plan, round_cfg = adaptive.describe_next(cfg)
    assert f"next: round 1: {journal['rounds'][1]['n']} trajectories" in plan and round_cfg is not None
    from harness.cli import main

    assert main(["run", str(QUICKSTART), "--dry-run", *tiny_overrides(tmp_path, **ADAPTIVE)]) == 0
    assert "next: round 1" in capsys.readouterr().out
    run_pipeline(cfg, plots=False)
    assert _answers(adaptive.load_journal(cfg)) == _answers(straight[2])


def test_a_changed_design_is_refused_and_restart_starts_the_rounds_over(straight, tmp_path):
    cfg = _cfg(tmp_path / "x", **{"sweep.budget.teacher_epochs": 8, "sweep.max_rounds": 1})
    adaptive.run_rounds(cfg, lambda c: None)  # no training: the look sees no comparison
    changed = _cfg(tmp_path / "x", **{"sweep.budget.teacher_epochs": 12, "sweep.max_rounds": 1})
    with pytest.raises(ConfigError, match="cannot change between looks"):
        adaptive.run_rounds(changed, lambda c: None)
    again = _cfg(tmp_path / "x", **{"sweep.budget.teacher_epochs": 12, "sweep.max_rounds": 1, "restart": "true"})
    _, journal = adaptive.run_rounds(again, lambda c: None)
    assert journal["design"]["budget"]["teacher_epochs"] == 12
    assert json.loads(adaptive.journal_path(again).read_text())["stopped"]["reason"] == "none"


def test_a_round_zero_over_the_budget_is_refused_before_compute(tmp_path):
    cfg = _cfg(tmp_path, **{"sweep.budget.teacher_epochs": 4})  # round 0: 2 trajectories x 4 epochs
    with pytest.raises(ConfigError, match="round 0 .* more than the budget"):
        adaptive.run_rounds(cfg, lambda c: pytest.fail("no round may start"))
    assert adaptive.load_journal(cfg) is None


def test_the_dry_run_says_when_the_stored_design_differs(tmp_path):
    cfg = _cfg(tmp_path, **{"sweep.max_rounds": 1})
    adaptive.run_rounds(cfg, lambda c: None)
    text, round_cfg = adaptive.describe_next(_cfg(tmp_path, **{"sweep.max_rounds": 2}))
    assert round_cfg is None and "max_rounds" in text and "--restart" in text
