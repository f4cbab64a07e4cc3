"""``ckd verify`` (issue 19, point 4) on a real tiny store: runs recorded by ``ckd sweep --local``
(packed), a trajectory and a scores file, re-computed here and compared bit for bit; rows
tampered with (digest recomputed, so they still count) or carrying another environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.cli import main, parse_args
from harness.fileio import sha256_bytes
from harness.row_schema import row_digest
from harness.store import torch_bytes
from harness.verify import Check, Verification, compare_json
from tests.helpers import QUICKSTART, tiny_overrides

SMALL = {
    "teacher.seeds": "[0]",
    "teacher.epochs": 2,
    "teacher.checkpoint_every": 1,
    "sweep.seeds": "[0,1]",
    "sweep.teacher_choices": '["none","full","epoch:1"]',
    "scoring.estimators": "[accuracy]",
    "data.num_samples": 2000,  # half the tiny data: re-training to the same bits does not need more
}


def _overrides(storage: Path) -> list[str]:
    return tiny_overrides(storage, **SMALL)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A tiny store made by the real local path: one 2-epoch trajectory, its scores, 6 student
    runs recorded by a packed ``ckd sweep --local``."""
    storage = tmp_path_factory.mktemp("verify") / "runs"
    for verb in ("teachers", "score", "sweep"):
        assert main([verb, str(QUICKSTART), "--local", *_overrides(storage)]) == 0
    return storage


def _copy(store: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs"
    shutil.copytree(store, target, symlinks=True)
    return target


def _rows(storage: Path) -> list[Path]:
    return sorted((storage / "quickstart" / "results" / "rows").glob("*.json"))


def _tamper(path: Path, **changes) -> dict:
    """Change a stored row and recompute its digest, so that it still counts as a valid row."""
    row = json.loads(path.read_text())
    row.update(changes)
    row["digest"] = row_digest(row)
    path.write_text(json.dumps(row))
    return row


def _verify(storage: Path, *flags: str) -> int:
    """``ckd verify`` through the CLI entry point, its flags among the overrides."""
    return main(["verify", str(QUICKSTART), *_overrides(storage)[:1], *flags, *_overrides(storage)[1:]])


def test_recorded_runs_re_train_bit_identical(store, capsys):
    """Packed sweep runs re-trained alone come out bit for bit (weights sha256 included); the
    store gains nothing."""
    before = {p.name: p.read_bytes() for p in _rows(store)}
    assert _verify(store, "--runs", "3") == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(lines) == 3 and all(line.endswith("bit-identical") for line in lines), out
    assert "3 bit-identical, 0 differ where the environment differs, 0 differ under an identical" in out
    assert {p.name: p.read_bytes() for p in _rows(store)} == before
    assert all(json.loads(b)["weights_sha256"] and json.loads(b)["pack_size"] == 6 for b in before.values())


def test_trajectory_and_scores_re_compute_bit_identical(store, capsys):
    assert _verify(store, "--runs=1", "--seed", "4", "--trajectories", "--scores") == 0
    out = capsys.readouterr().out
    assert "trajectory cnn1d_small-mnist1d-s0: bit-identical" in out
    assert "scores cnn1d_small-mnist1d-s0: bit-identical" in out
    assert not list(store.glob(".verify-*"))  # the scratch store is gone


def test_a_changed_checkpoint_is_named_tensor_by_tensor(store, tmp_path, capsys):
    """A checkpoint rewritten with one weight changed (its manifest sha256 updated, so it loads)."""
    storage = _copy(store, tmp_path)
    folder = storage / "quickstart" / "trajectories" / "cnn1d_small-mnist1d-s0"
    payload = torch.load(folder / "ckpt-e0002.pt", weights_only=True)
    name = sorted(payload["model"])[0]
    payload["model"][name] = payload["model"][name] + 1e-3
    data = torch_bytes(payload)
    (folder / "ckpt-e0002.pt").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    next(c for c in manifest["checkpoints"] if c["epoch"] == 2)["sha256"] = sha256_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert _verify(storage, "--runs", "1", "--trajectories") == 1
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("trajectory "))
    assert "DIFFERS under an identical environment" in line and "e2 weights (1 of " in line and name in line
    assert "e1 " not in line  # the other checkpoint is bit-identical


def test_a_changed_value_under_the_same_environment_is_a_bug(store, tmp_path, capsys):
    storage = _copy(store, tmp_path)
    path = _rows(storage)[0]
    row = json.loads(path.read_text())
    _tamper(path, final_test_acc=row["final_test_acc"] + 0.01 if row["final_test_acc"] < 0.5 else 0.25)
    assert _verify(storage, "--runs", "10") == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith(f"run {row['run_id'][:12]}"))
    assert "DIFFERS under an identical environment" in line and "final_test_acc" in line and " pp" in line
    assert "test_acc_per_epoch" not in line  # only the value that was changed
    assert "5 bit-identical" in out and "1 differ under an identical environment" in out


def test_a_difference_where_the_environment_differs_is_expected(store, tmp_path, capsys):
    storage = _copy(store, tmp_path)
    path = _rows(storage)[0]
    row = json.loads(path.read_text())
    env = {**row["environment"], "torch": "1.13.0", "threads": 7}
    _tamper(path, environment=env, final_val_acc=0.125 if row["final_val_acc"] != 0.125 else 0.25)
    assert _verify(storage, "--runs", "10") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith(f"run {row['run_id'][:12]}"))
    assert "differs, expected: environment differs in threads, torch" in line and "final_val_acc" in line
    assert "1 differ where the environment differs, 0 differ under an identical" in out


def test_no_recorded_rows_is_bad_input(tmp_path, capsys):
    assert _verify(tmp_path / "runs") == 2
    assert "no recorded result rows" in capsys.readouterr().err


def test_verify_flags_may_sit_among_the_overrides():
    args = parse_args(["verify", "c.yaml", "a=1", "--runs", "5", "b=2", "--seed=9", "--scores"])
    assert (args.runs, args.seed, args.scores, args.trajectories) == (5, 9, True, False)
    assert args.overrides == ["a=1", "b=2"]
    with pytest.raises(SystemExit):
        parse_args(["verify", "c.yaml", "--runs", "-1"])


def test_status_and_exit_status():
    same, expected = Check("run", "a"), Check("run", "b", ["final_test_acc"], ["threads"], -0.5)
    bug = Check("run", "c", ["weights_sha256"], [])
    assert [c.status for c in (same, expected, bug)] == ["bit-identical", "expected", "irreproducible"]
    assert Verification([same, expected]).exit_status == 0 and Verification([same, bug]).exit_status == 1
    assert "final test acc -0.50 pp" in expected.line()
    assert compare_json({"a": [1, {"b": 2.0}], "timings": 1}, {"a": [1, {"b": 3.0}], "timings": 2}) == ["a[1].b"]
