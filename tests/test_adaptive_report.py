"""The adaptive sweep's report (issue 24, point 3): the rounds table, compute to decision against
the fixed design, the Markdown/HTML/CSV renderings, the intervals plot and the journal loader."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.report.adaptive_report import (
    compute_table,
    load_rounds,
    plot_rounds,
    render_adaptive,
    rounds_frame,
    rounds_table,
    write_adaptive,
)


def _look(n: int, m: int, diff: float, half: float, p: float, answer: str = "undecided", at: int | None = None) -> dict:
    return {
        "n": n,
        "m": m,
        "students": n * m,
        "diff_mean": diff,
        "se": half / 2,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "p_value": p,
        "p_lower": 0.2,
        "p_upper": 0.3,
        "fraction": 0.5,
        "nominal_diff": 0.0004,
        "nominal_equiv": 0.0008,
        "rejects_diff": answer in ("better", "worse"),
        "rejects_lower": False,
        "rejects_upper": False,
        "sd_between": 0.004,
        "sd_within": 0.006,
        "margin": 0.005,
        "answer": answer,
        "decided_at": at,
    }


def journal() -> dict:
    """Two comparisons, three rounds: ``1a`` decided better at round 1 (absent from round 2), ``2``
    never decided; stopped by the budget."""
    spent = [(400, 3300, 0.05), (800, 6600, 0.1), (1600, 13200, 0.2)]
    looks = [
        {"1a": _look(5, 2, 0.004, 0.006, 0.08), "2": _look(5, 2, -0.001, 0.008, 0.7)},
        {"1a": _look(8, 2, 0.0045, 0.003, 0.0001, "better", 1), "2": _look(8, 2, 0.0005, 0.006, 0.8)},
        {"2": _look(16, 2, 0.0002, 0.0052, 0.9)},
    ]
    rounds = [
        {
            "round": k,
            "n": [5, 8, 16][k],
            "m": 2,
            "status": "done",
            "spent": dict(zip(("teacher_epochs", "student_epochs", "device_hours"), spent[k])),
            "plan": None if k == 2 else {"n": [8, 16][k], "m": 2, "action": "trajectories", "stop": None},
            "looks": looks[k],
        }
        for k in range(3)
    ]
    return {
        "version": 1,
        "design": {
            "alpha": 0.05,
            "alpha_each": 0.025,
            "comparisons": 2,
            "margin": 0.005,
            "spending": "obf",
            "budget": {"teacher_epochs": 1600, "student_epochs": None, "device_hours": None},
        },
        "comparisons": {"1a": "claim 1a: epoch:40 vs full", "2": "claim 2: snapshot:[0.5,1.0] vs full_ensemble:2"},
        "rounds": rounds,
        "stopped": {"reason": "budget", "text": "budget spent after round 2: 1600 of 1600 teacher-epochs"},
        "fixed": {
            "1a": {
                "trajectories": 20,
                "m": 2,
                "compute": {"teacher_epochs": 2000, "student_epochs": 16500, "device_hours": 0.25},
                "effect": 0.004,
                "note": "fixed design with 80% power at the observed difference",
            },
            "2": {"trajectories": 40, "m": 2, "compute": {"teacher_epochs": 4000, "student_epochs": 33000}},
        },
    }


def test_rounds_table_rows_answers_and_pp():
    headers, rows = rounds_table(journal())
    assert headers[:4] == ["round", "comparison", "n", "Δ pp [RCI]"]
    assert len(rows) == 6 and [r[:2] for r in rows[:2]] == [["0", "1a"], ["0", "2"]]
    col = {h: i for i, h in enumerate(headers)}
    by = {(r[0], r[1]): r for r in rows}
    assert by["1", "1a"][col["Δ pp [RCI]"]] == "+0.45 [+0.15, +0.75]"
    assert by["1", "1a"][col["n"]] == "8×2"
    assert by["1", "1a"][col["answer"]] == "better"
    assert by["1", "1a"][col["p / nominal"]] == "1.0e-04 / 4.0e-04"
    assert by["1", "1a"][col["TOST p / nominal"]] == "0.300 / 8.0e-04"
    assert by["2", "1a"][col["answer"]] == "better (round 1)"  # kept although its look is absent
    assert by["2", "1a"][col["n"]] == "-"
    assert by["0", "1a"][col["answer"]] == by["2", "2"][col["answer"]] == "undecided"
    assert by["2", "2"][col["spent (t-ep / s-ep / h)"]] == "1600 / 13200 / 0.2"


def test_compute_table_against_fixed_design():
    headers, rows = compute_table(journal())
    col = {h: i for i, h in enumerate(headers)}
    a, b = rows
    assert a[col["answer"]] == "better" and a[col["decided at"]] == "1" and a[col["n"]] == "8×2"
    assert a[col["fixed n"]] == "20×2"
    # device-hours weigh teacher and student epochs as the planner does: 0.1 of the fixed design's 0.25
    assert a[col["adaptive / fixed"]] == "0.40 (device-hours)"
    assert b[col["answer"]] == "undecided: budget spent" and b[col["decided at"]] == "n/a"
    assert b[col["adaptive / fixed"]] == "n/a"  # its fixed design did not count hours
    j = journal()  # an older journal without hours: student-epochs (6600 of 16500, 13200 of 33000)
    for rnd in j["rounds"]:
        rnd["spent"].pop("device_hours")
    assert [row[col["adaptive / fixed"]] for row in compute_table(j)[1]] == ["0.40 (student-epochs)"] * 2


def test_render_formats():
    j = journal()
    text = render_adaptive(j, "text", width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "O'Brien-Fleming" in text and "±0.50 pp" in text and "budget spent after round 2" in text
    md = render_adaptive(j, "md")
    assert "| 1 | 1a | 8×2 | +0.45 [+0.15, +0.75] |" in md and "undecided: budget spent" in md
    assert "claim 2: snapshot:[0.5,1.0] vs full_ensemble:2" in md
    html = render_adaptive(j, "html")
    assert 'id="adaptive-rounds"' in html and 'class="answer-better"' in html
    with pytest.raises(ValueError, match="format"):
        render_adaptive(j, "latex")


def test_equivalent_answer_names_margin():
    j = journal()
    j["rounds"][1]["looks"]["2"].update(answer="equivalent", decided_at=1)
    del j["rounds"][2]["looks"]["2"]
    headers, rows = rounds_table(j)
    assert rows[-1][headers.index("answer")] == "equivalent within ±0.50 pp (round 1)"
    assert compute_table(j)[1][1][1] == "equivalent within ±0.50 pp"


def test_write_adaptive_files_csv_round_trip(tmp_path: Path):
    j = journal()
    paths = write_adaptive(tmp_path, j)
    assert [p.name for p in paths] == ["adaptive.md", "adaptive.csv", "adaptive_intervals.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[2].stat().st_size > 10_000
    back = pd.read_csv(paths[1])
    pd.testing.assert_frame_equal(back, rounds_frame(j), check_dtype=False)
    row = back[(back["round"] == 2) & (back["comparison"] == "1a")].iloc[0]
    assert row["answer"] == "better" and row["decided_at"] == 1 and pd.isna(row["diff_mean_pct"])
    assert back.loc[back["round"] == 1, "diff_mean_pct"].tolist() == [0.45, 0.05]
    assert plot_rounds({"rounds": [], "comparisons": {}}, tmp_path) is None


def test_load_rounds(tmp_path: Path):
    assert load_rounds(tmp_path) is None
    path = tmp_path / "adaptive" / "rounds.json"
    path.parent.mkdir()
    path.write_text(json.dumps(journal()))
    assert load_rounds(tmp_path)["stopped"]["reason"] == "budget"
    path.write_text('{"version": 1, "rounds": [')
    with pytest.raises(ValueError, match=str(path)):
        load_rounds(tmp_path)
    path.write_text('{"version": 1, "rounds": {}}')
    with pytest.raises(ValueError, match="no list of rounds"):
        load_rounds(tmp_path)


def test_running_sweep_with_planned_round(tmp_path: Path):
    """Still running: the next round is planned (no looks, nothing spent); a look of one
    trajectory has no interval (NaN in the journal)."""
    j = journal()
    j["stopped"], j["fixed"] = None, {}
    j["rounds"][0]["looks"]["2"].update(n=1, ci_low=float("nan"), ci_high=float("nan"), p_value=float("nan"))
    j["rounds"].append({"round": 3, "n": 24, "m": 2, "status": "planned", "why": "trajectory variance dominates"})
    j = json.loads(json.dumps(j))  # NaN as the runner's json.dump writes it
    headers, rows = rounds_table(j)
    col = {h: i for i, h in enumerate(headers)}
    assert rows[-1][col["answer"]] == "planned: 24×2" and rows[-2][col["answer"]] == "better (round 1)"
    assert rows[1][col["Δ pp [RCI]"]] == "-0.10 [n/a, n/a]" and rows[1][col["p / nominal"]].startswith("n/a /")
    (_, rows) = compute_table(j)
    assert rows[1][1] == "undecided: still running" and rows[1][4] == "1600 / 13200 / 0.2"
    assert rows[0][-1] == "n/a"  # no fixed design yet
    path = plot_rounds(j, tmp_path)
    assert path is not None and path.stat().st_size > 10_000


def test_no_plot_when_plots_are_off(tmp_path):
    written = write_adaptive(tmp_path, journal(), plot=False)
    assert [p.name for p in written] == ["adaptive.md", "adaptive.csv"] and not (tmp_path / "plots").exists()
