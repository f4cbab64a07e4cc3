"""benchmarks/bench_quickstart.py and bench_scorer_cost.py (issue 23): argument handling and the
parsing of a ``ckd run`` console; no timings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import bench_quickstart as bq  # noqa: E402
from benchmarks import bench_scorer_cost as bs  # noqa: E402

CONSOLE = [
    (1.2, "[run] config quickstart"),
    (3.4, "[cluster] local Ray cluster: 1 node(s), 2 CPUs, no GPUs"),
    (3.5, "[teachers] 3 trajectories to train in Ray actors (1 CPU, 0 GPU each, up to 3 restarts)"),
    (40.0, "[teachers] cnn1d_small-mnist1d-s0: finished, test acc 70.1%"),
    (41.0, "[score] cnn1d_small-mnist1d-s0: selected paper=e40 (p=0.60); ensembles K=2:[40, 80] (9.0s)"),
    (80.5, "[teachers] cnn1d_small-mnist1d-s1: finished, test acc 69.0%"),
    (95.0, "[score] cnn1d_small-mnist1d-s1: selected paper=e50 (p=0.55); ensembles - (9.1s)"),
    (120.0, "[sweep] trial full s0 finished"),
    (150.0, "[sweep] Tune experiment sweep-0: 18 trials (18 ok), 60.2s"),
    (151.0, "[report] written to /tmp/x/quickstart: leaderboard.{md,csv,html}"),
    (
        151.1,
        "[run] stage times: teachers 80.0s, score (after teachers) 15.0s, sweep (overlapped) 55.0s, "
        "report 1.0s; total 150.0s",
    ),
]


def test_parse_log_stage_times() -> None:
    out = bq.parse_log(CONSOLE)
    assert out["ray_up_s"] == 3.4
    assert out["teacher_done_s"] == {"cnn1d_small-mnist1d-s0": 40.0, "cnn1d_small-mnist1d-s1": 80.5}
    assert out["teachers_done_s"] == 80.5
    assert out["scores_s"]["cnn1d_small-mnist1d-s1"] == 95.0 and out["last_score_s"] == 95.0
    assert out["sweep_done_s"] == 150.0  # the sweep's last line after the last score
    assert out["report_s"] == 151.0 and out["report_written"] is True
    assert out["stage_times_s"] == {
        "teachers": 80.0,
        "score (after teachers)": 15.0,
        "sweep (overlapped)": 55.0,
        "report": 1.0,
    }
    assert out["harness_total_s"] == 150.0


def test_parse_log_missing_stages_left_out() -> None:
    out = bq.parse_log([(1.0, "something else"), (2.0, "[report] no student results yet; nothing written")])
    assert "ray_up_s" not in out and "teachers_done_s" not in out and "stage_times_s" not in out
    assert out["teacher_done_s"] == {} and out["report_s"] == 2.0 and out["report_written"] is False


def test_parse_runs_labels_and_refusal(tmp_path: Path) -> None:
    assert bq.parse_runs(None, str(tmp_path)) == {"after": tmp_path.resolve()}
    got = bq.parse_runs([f"before={tmp_path}", f"after={ROOT}"], "unused")
    assert list(got) == ["before", "after"] and got["after"] == ROOT.resolve()
    with pytest.raises(SystemExit, match="label=DIR"):
        bq.parse_runs(["nolabel"], "unused")


def test_scorer_cost_overrides() -> None:
    args = bs.parse_args(["--estimators", "ridge", "recon", "--synthetic-cifar", "--samples", "300", "a.b=1"])
    over = bs.base_overrides(args, "/s")
    assert over[:3] == ["storage=/s", "tracking.mode=disabled", "threads=1"]
    assert "a.b=1" in over and "scoring.estimators=[ridge,recon]" in over
    assert "data.name=synthetic_cifar10" in over and "data.num_samples=300" in over
    plain = bs.base_overrides(bs.parse_args([]), "/s")
    assert not any(o.startswith(("scoring.estimators", "data.name")) for o in plain)


def test_scorer_cost_scaling_and_table() -> None:
    s = bs.scaled({"wall_s": 12.0, "epoch_loop_s": 10.0}, 3.0)
    assert s["seconds"] == 32.0 and s["fixed_s"] == 2.0 and s["measured_s"] == 12.0
    res = {
        "checkpoints": 8,
        "scorer": {"scorer_s": 2.0, "estimators_s": {"ridge": 0.5, "kde": 1.0}},
        "brute": {"alone": {"seconds": 40.0}, "packed": {"seconds": 20.0}, "extrapolated": False},
        "ratio_alone": 0.05,
        "ratio_packed": 0.1,
    }
    line = bs.table_line("quickstart", "after", res)
    assert line.startswith("| quickstart | after | 8 | 2.0 (ridge 0.5, kde 1.0) | 40.0 | 20.0 |")
    assert "5.0%" in line and "10.0%" in line


def test_scorer_cost_reduced_overrides() -> None:
    from harness.config_loading import load_config

    cfg = load_config(str(ROOT / "benchmarks" / "paper_claims" / "cifar100_wrn_40_2.yaml"), [])
    assert bs.reduced_overrides(cfg, {}) == []
    got = bs.reduced_overrides(cfg, {"measure_checkpoints": 2, "row_fraction": 0.25})
    assert "teacher.checkpoint_every=100" in got and "scoring.num_samples=500" in got
    assert f"scoring.feature_cache_mb={cfg.scoring.feature_cache_mb * 0.2 * 0.25}" in got  # caches as K=10 would
    assert f"scoring.ridge.train_samples={round(cfg.scoring.ridge.train_samples * 0.25)}" in got
    small = load_config(str(ROOT / "benchmarks" / "paper_claims" / "cifar100_wrn_40_2.yaml"), got)
    assert bs.config_checkpoints(cfg) == 10 and bs.config_checkpoints(small) == 2


def test_scorer_cost_scale_scorer() -> None:
    t = {"scorer_s": 10.0, "load_s": 1.0, "features_s": 4.0, "estimators_s": {"ridge": 2.0, "kde": 1.0, "binning": 1.0}}
    out = bs.scale_scorer(t, 2, 10, {"sample": 500, "train": 375}, {"sample": 2000, "train": 1500})
    # x5 checkpoints; features x4 (all rows), ridge x16 (all rows squared), kde x16 (sample rows squared),
    # binning x4, the rest (1 s) x5
    assert out["load_s"] == 5.0 and out["features_s"] == 80.0
    assert out["estimators_s"] == {"ridge": 160.0, "kde": 80.0, "binning": 20.0}
    assert out["scorer_s"] == 5.0 + 80.0 + 260.0 + 5.0
    assert out["scaled"]["checkpoints"] == [2, 10] and out["scaled"]["all_rows"] == 4.0
    same = bs.scale_scorer(t, 8, 8, {"sample": 400, "train": 0}, {"sample": 400, "train": 0})
    assert same["scorer_s"] == 10.0 and same["estimators_s"] == t["estimators_s"]
