"""The paper's claims: planted effects give the right verdicts, through `ckd claims` on a real store."""

from __future__ import annotations

import csv
import io

import pytest

from harness.cli import main
from harness.report.board import build_leaderboard
from harness.report.claims import check_claims, paper_figure, paper_figures
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows

EPOCHS = {10: -0.02, 20: 0.0, 30: 0.0, 40: 0.012, 50: 0.0, 60: 0.0, 70: 0.0, 80: 0.0}
OTHER = {"snapshot:[0.5,1.0]": -0.012, "full_ensemble:2": 0.0, "selected:paper": 0.0}


def by_claim(claims: list[dict]) -> dict[str, dict]:
    return {c["claim"]: c for c in claims}


def test_planted_effects_give_the_four_answers_per_claim():
    claims = by_claim(check_claims(build_leaderboard(planted_rows(EPOCHS, OTHER, picks={"paper": 80}))))
    assert set(claims) == {"1a", "1b", "2", "3"}
    # 1a: no fraction:0.5 row, so the half-way checkpoint is epoch:40 (= 80 / 2), planted +1.2 pp
    assert claims["1a"]["choice"] == "epoch:40" and claims["1a"]["verdict"] == "better: reproduced"
    assert claims["1a"]["diff_mean"] == pytest.approx(0.012, abs=0.002)
    # the effective n: 5 trajectories with 2 students each (10 seeds, seed i -> trajectory i % 5)
    assert (claims["1a"]["n"], claims["1a"]["students"], claims["1a"]["per_cluster_max"]) == (5, 10, 2)
    # 1b, cross-fitted: every trajectory's epoch is chosen on the other trajectories: epoch 40 each time
    c1b = claims["1b"]
    assert c1b["choice"] == "best intermediate (cross-fit)" and c1b["answer"] == "better"
    assert c1b["choice_epochs"] == "s0:40 s1:40 s2:40 s3:40 s4:40"
    # 2: the snapshot is planted 1.2 pp *worse* than the full ensemble: the claim is contradicted
    c2 = claims["2"]
    assert (c2["choice"], c2["ref"], c2["verdict"]) == ("snapshot:[0.5,1.0]", "full_ensemble:2", "worse: contradicted")
    assert c2["choice_teacher_acc"] == pytest.approx(0.97) and c2["ref_teacher_acc"] == pytest.approx(0.985)
    # 3: T* picked the final checkpoint everywhere: the same runs as full, not a hypothesis
    assert claims["3"]["same"] and claims["3"]["verdict"] == "same runs as full: not tested"
    tested = [c for c in claims.values() if not c.get("same")]
    assert len(tested) == 3 and all(c["p_holm"] >= c["p_value"] for c in tested)


def test_no_effect_is_equivalent_and_too_few_trajectories_are_undecided():
    flat = {e: 0.0 for e in EPOCHS}
    claims = check_claims(
        build_leaderboard(planted_rows(flat, {"snapshot:[0.5,1.0]": 0.0, "full_ensemble:2": 0.0}, seed=3))
    )
    # no effect: equivalent within the margin; a chance significant difference says it is inside it
    assert claims and all(
        c["verdict"] == "equivalent within ±0.50 pp: not reproduced"
        or c["verdict"].split(":")[0] in ("better, by less than ±0.50 pp", "worse, by less than ±0.50 pp")
        for c in claims
    )
    # a large planted effect from one trajectory: however many students, no answer
    one = by_claim(check_claims(build_leaderboard(planted_rows({40: 0.05, 80: 0.0}, {}, n_traj=1, n_seeds=4))))
    assert one["1a"]["n"] == 1 and one["1a"]["verdict"] == "undecided: needs at least 2 trajectories"
    # 0.4 pp from 2 trajectories: neither different nor equivalent yet; says what would decide it
    two = by_claim(check_claims(build_leaderboard(planted_rows({40: 0.004, 80: 0.0}, {}, n_traj=2, n_seeds=4))))
    c = two["1a"]
    assert c["answer"] == "undecided" and c["more_trajectories"] >= 1
    assert c["verdict"].startswith("undecided: about ") and c["verdict"].endswith("would decide it")


def test_paper_figures_cite_their_table():
    f = paper_figures()
    assert f["table1"]["table"] == "Table 1" and f["table2"]["table"] == "Table 2" and "2210.06458" in f["source"]
    # the same pair: the paper's own difference; another setup: the mean over the paper's pairs
    assert paper_figure("1a", "cifar100", "wrn_40_2", "wrn_40_1").startswith("+0.08 pp (72.76 vs 72.68")
    assert paper_figure("2", "cifar100", "resnet110", "resnet32").startswith("+0.15 pp (73.03 vs 72.88")
    assert paper_figure("1a", "mnist1d", "cnn1d_small", "mlp_small").startswith("+0.30 pp (mean of 4 CIFAR-100 pairs")
    assert paper_figure("3", "mnist1d", "cnn1d_small", "mlp_small").startswith("+0.41 pp (70.87 vs 70.46")


def test_ckd_claims_reads_the_store_prints_and_writes(tmp_path, capsys):
    store = CheckpointStore(tmp_path, "quickstart")
    fill_store(store, planted_rows(EPOCHS, OTHER, picks={"paper": 80}))
    assert main(["claims", str(QUICKSTART), f"storage={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "better: reproduced" in out and "worse: contradicted" in out and "Table 1" in out
    assert "the 3 tested rows" in " ".join(out.split())  # text and console renderings both say it
    lines = list(csv.DictReader(io.StringIO((store.root / "claims.csv").read_text())))
    assert [r["claim"] for r in lines] == ["1a", "1b", "2", "3"]
    assert {r["claim"]: r["answer"] for r in lines}["2"] == "worse" and "claims" in (
        store.root / "claims.md"
    ).read_text().lower()
    # an empty store: says what the claims need, writes nothing
    assert main(["claims", str(QUICKSTART), f"storage={tmp_path / 'empty'}"]) == 0
    assert "No student results yet" in capsys.readouterr().out


def test_benchmark_configs_validate_and_hold_every_claim():
    """benchmarks/paper_claims/*.yaml: valid, paired, every checkpoint, both ensembles, T*, 5+ trajectories."""
    from harness.config_loading import load_config

    paths = sorted((QUICKSTART.parents[1] / "benchmarks" / "paper_claims").glob("*.yaml"))
    assert [p.name for p in paths] == [
        "cifar100_resnet110.yaml",
        "cifar100_wrn_40_2.yaml",
        "mnist1d.yaml",
        "mnist1d_adaptive.yaml",
        "mnist1d_cosine.yaml",
        "mnist1d_wide.yaml",
    ]
    for p in paths:
        cfg = load_config(p)
        assert len(cfg.teacher.seeds) >= 5 and len(cfg.sweep.seeds) >= 2 * len(cfg.teacher.seeds), p.name
        assert cfg.sweep.teacher_seeds == "paired" and cfg.report.reference == "full", p.name
        needed = {"every_checkpoint", "full", "selected:paper", "snapshot:[0.5,1.0]", "full_ensemble:2"}
        assert needed | ({"none"} if cfg.sweep.until == "fixed" else set()) <= set(cfg.sweep.teacher_choices)
    adaptive = load_config(paths[3])  # the claims decided in rounds: a budget that bounds both kinds of work
    assert adaptive.sweep.until == "decided" and not adaptive.report.compare
    assert adaptive.sweep.budget.teacher_epochs and adaptive.sweep.budget.student_epochs
    assert {load_config(p).teacher.optim.schedule for p in paths if "mnist1d" in p.name} == {"step", "cosine"}


def test_an_intermediate_epoch_trained_under_another_name_still_competes_in_1b():
    """`fraction:0.5` listed before `every_checkpoint` keeps the half-way runs under its name
    (`fraction:0.5 (= epoch:20)`): claim 1b still counts epoch 20, where the effect is planted."""
    rows = planted_rows({10: 0.0, 20: 0.02, 30: 0.0, 40: 0.0}, {}, n_traj=5, n_seeds=10)
    rows = [dict(r, teacher_choice="fraction:0.5") if r["teacher_choice"] == "epoch:20" else r for r in rows]
    board = build_leaderboard(rows, aliases={"fraction:0.5": ["epoch:20"], "full": ["epoch:40"]})
    claims = by_claim(check_claims(board))
    assert claims["1a"]["choice"] == "fraction:0.5" and claims["1a"]["answer"] == "better"
    assert claims["1b"]["choice_epochs"] == "s0:20 s1:20 s2:20 s3:20 s4:20" and claims["1b"]["answer"] == "better"


def test_the_power_note_counts_trajectories_and_students():
    """Two students per trajectory: the variance components and trajectories for 0.3 pp; one
    student per trajectory: the trajectories, and that the two parts cannot be told apart."""
    from harness.report.leaderboard import power_note

    two = " ".join(power_note(build_leaderboard(planted_rows(EPOCHS, OTHER, n_traj=5, n_seeds=10))).split())
    assert "n = 5 trajectories × 2 student(s) each" in two and "Variance components: trajectory sd" in two
    assert "however many students per trajectory" in two or "trajectories at 2 student(s) each." in two
    one = " ".join(power_note(build_leaderboard(planted_rows(EPOCHS, OTHER, n_traj=5, n_seeds=5))).split())
    assert "n = 5 trajectories × 1 student(s) each" in one and "cannot be told apart" in one
