"""Verified artifacts (issue 18, faults 2 and 6), injected for real.

Teacher-logit cache files with the right name and wrong contents are written under the real cache
path of a tiny store; a real distillation must warn, replace the file and record the honest
teacher accuracy. Scores files get forged picks (with and without a recomputed digest); the
teacher choices ``selected:*`` must refuse them with one line (``ckd distill``: exit 2) and
``ckd score`` must rescore them.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.config_loading import load_config
from harness.distill import distill_student
from harness.experiment import load_splits, open_store
from harness.scoring.freshness import scores_fresh
from harness.scoring.runner import run_scoring
from harness.scoring.scores_file import DIGEST_KEY, ScoresError, scores_path, write_scores
from harness.scoring.teacher_picks import pick_problem, read_selected, read_selected_ensemble
from harness.store import torch_bytes
from harness.teacher_choices import TeacherRef
from harness.teacher_logits import LogitCache, tensor_sha256, verify_entry
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides

TRAJ = "cnn1d_small-mnist1d-s0"
SCORED = "cnn1d_tiny-mnist1d-s0"


# ----------------------------------------------------------------------------- fault 2: the logit cache


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """One finished 2-epoch trajectory (checkpoints at 1 and 2) and the honest teacher row."""
    storage = tmp_path_factory.mktemp("verified") / "runs"
    overrides = {"teacher.seeds": "[0]", "teacher.epochs": 2, "teacher.checkpoint_every": 1}
    cfg = load_config(QUICKSTART, tiny_overrides(storage, **overrides))
    train_trajectory(cfg, "cnn1d_small", 0)
    honest = distill_student(_student(cfg, 0))
    return cfg, honest


def _student(cfg, seed: int):
    """``cfg`` distilling one 1-epoch student from the final checkpoint with student seed ``seed``."""
    out = copy.deepcopy(cfg)
    out.distill.teacher_choice, out.distill.seed, out.student.epochs = "full", seed, 1
    return out


def _cache(cfg) -> LogitCache:
    return LogitCache(cfg, open_store(cfg), load_splits(cfg), torch.device("cpu"))


def _forged(entry: dict, **changes) -> bytes:
    """``entry`` with ``changes`` and its digest recomputed (an attacker who knows the format)."""
    out = {**entry, **changes}
    out["tensors_sha256"] = tensor_sha256(out["logits"], out["labels"])
    return torch_bytes(out)


def _variants(cache: LogitCache, final: TeacherRef) -> dict:
    """Each bad cache file as a function ``path -> None`` that plants it at ``path``."""
    honest = torch.load(cache.path(final, "test"), weights_only=True)
    other = torch.load(cache.path(TeacherRef(TRAJ, 1), "test"), weights_only=True)
    z, y = honest["logits"], honest["labels"]
    n = z.shape[0]

    def write(data: bytes):
        return lambda path: path.write_bytes(data)

    def folder(path: Path) -> None:
        path.mkdir()
        (path / "inside.txt").write_text("x")

    return {
        "another epoch's file": write(torch_bytes(other)),
        "another epoch's logits under this file's inputs": write(torch_bytes({**honest, "logits": other["logits"]})),
        "random logits, stale digest": write(torch_bytes({**honest, "logits": torch.randn_like(z) * 50})),
        "random logits, old format": write(torch_bytes({"logits": torch.randn_like(z) * 50, "labels": y})),
        "NaN logits": write(_forged(honest, logits=torch.where(torch.rand_like(z) < 0.1, torch.nan, z))),
        "integer logits": write(_forged(honest, logits=(z * 100).long())),
        "shifted labels": write(_forged(honest, labels=torch.roll(y, 1))),
        "wrong class count": write(_forged(honest, logits=z[:, :5].contiguous())),
        "wrong row count": write(_forged(honest, logits=z[: n - 1], labels=y[: n - 1])),
        "truncated": write(torch_bytes(honest)[: len(torch_bytes(honest)) // 2]),
        "a directory": folder,
    }


VARIANTS = [
    "another epoch's file",
    "another epoch's logits under this file's inputs",
    "random logits, stale digest",
    "random logits, old format",
    "NaN logits",
    "integer logits",
    "shifted labels",
    "wrong class count",
    "wrong row count",
    "truncated",
    "a directory",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_bad_cache_file_is_replaced_and_never_used(taught, logs, variant):
    cfg, honest = taught
    cache, final = _cache(cfg), TeacherRef(TRAJ, 2)
    cache.logits(TeacherRef(TRAJ, 1), "test")  # epoch 1's files exist: the source of a copied file
    good = cache.logits(final, "test").clone()
    path = cache.path(final, "test")
    plant = _variants(cache, final)[variant]
    path.unlink()
    plant(path)

    row = distill_student(_student(cfg, 1 + VARIANTS.index(variant)))

    warned = [m for m in logs.messages if str(path) in m and "recomputing" in m]
    assert len(warned) == 1, logs.messages
    assert row["teacher_test_acc"] == honest["teacher_test_acc"]
    assert path.is_file() and not path.is_symlink()
    entry = torch.load(path, weights_only=True)
    assert verify_entry(entry, cache.inputs(final, "test"), cache.labels("test")) is None
    torch.testing.assert_close(entry["logits"], good)


def test_a_cache_file_that_links_outside_storage_is_not_followed(taught, logs, tmp_path):
    cfg, honest = taught
    cache, final = _cache(cfg), TeacherRef(TRAJ, 2)
    cache.logits(final, "val")
    path = cache.path(final, "val")
    outside = tmp_path / "outside.pt"
    outside.write_bytes(path.read_bytes())  # honest contents: still never read through a link
    before = outside.read_bytes()
    path.unlink()
    path.symlink_to(outside)

    row = distill_student(_student(cfg, 20))

    assert row["teacher_val_acc"] == honest["teacher_val_acc"]
    assert any(str(path) in m and "symbolic link" in m for m in logs.messages), logs.messages
    assert path.is_file() and not path.is_symlink() and outside.read_bytes() == before


def test_a_verified_cache_file_is_a_hit(taught):
    cfg, _ = taught
    cache, final = _cache(cfg), TeacherRef(TRAJ, 2)
    first = cache.logits(final, "val")
    again = _cache(cfg)
    torch.testing.assert_close(again.logits(final, "val"), first)
    assert (again.hits, again.misses) == (1, 0)
    entry = torch.load(cache.path(final, "val"), weights_only=True)
    assert entry["checkpoint_sha256"] == cache.sha256(final) and entry["split"] == "val"
    assert entry["rows"] == first.shape[0] and entry["classes"] == first.shape[1]


# ----------------------------------------------------------------------------- fault 6: scores and picks


def _scoring_overrides(storage: Path) -> list[str]:
    return tiny_overrides(
        storage,
        **{
            "teacher.archs": "[cnn1d_tiny]",
            "teacher.seeds": "[0]",
            "teacher.epochs": 6,
            "teacher.checkpoint_every": 1,
            "scoring.estimators": "[ridge,recon,accuracy]",
            "scoring.ridge.train_samples": 200,
            "scoring.num_samples": 80,
            "scoring.recon.max_epochs": 4,
            "scoring.recon.patience": 2,
            "scoring.recon.train_samples": 200,
            "scoring.recon.seeds": 2,
            "scoring.folds": 4,
            "scoring.bootstrap": 200,
            "scoring.ensemble_sizes": "[2]",
            "scoring.min_gap_fraction": 0.3,
        },
    )


@pytest.fixture(scope="module")
def scored_store(tmp_path_factory) -> Path:
    """A store with one finished, scored 6-checkpoint trajectory."""
    storage = tmp_path_factory.mktemp("scored") / "runs"
    cfg = load_config(QUICKSTART, _scoring_overrides(storage))
    train_trajectory(cfg, "cnn1d_tiny", 0)
    run_scoring(cfg)
    return storage


@pytest.fixture
def scored(scored_store: Path, tmp_path: Path):
    """A private copy of the scored store: (cfg, store, scores as written)."""
    storage = tmp_path / "runs"
    shutil.copytree(scored_store, storage)
    cfg = load_config(QUICKSTART, _scoring_overrides(storage))
    store = open_store(cfg)
    return cfg, store, json.loads(scores_path(store, SCORED).read_text())


def _other_epoch(scores: dict, selector: str) -> int:
    picked = scores["selected"][selector]["epoch"]
    return next(c["epoch"] for c in scores["checkpoints"] if c["epoch"] != picked)


def _distill_selected(cfg, capsys) -> tuple[int, list[str]]:
    rc = main(["distill", str(QUICKSTART), *_scoring_overrides(Path(cfg.storage)), "teacher_choice=selected:paper"])
    return rc, [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the log lines


def test_honest_scores_carry_a_digest_and_resolve(scored):
    cfg, store, scores = scored
    assert len(scores[DIGEST_KEY]) == 64 and pick_problem(scores) is None and scores_fresh(cfg, SCORED)
    assert read_selected(store, SCORED, "paper") == scores["selected"]["paper"]["epoch"]
    assert read_selected_ensemble(store, SCORED, 2) == scores["selected_ensemble"]["by_k"]["2"]["epochs"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("digest", ["stale", "recomputed"])
def test_a_forged_pick_is_refused_with_one_line_and_rescored(scored, capsys, digest):
    cfg, store, scores = scored
    path, honest = scores_path(store, SCORED), scores["selected"]["paper"]["epoch"]
    scores["selected"]["paper"]["epoch"] = _other_epoch(scores, "paper")
    if digest == "recomputed":
        write_scores(store, SCORED, scores)  # the attacker reseals the file
    else:
        path.write_text(json.dumps(scores))

    rc, err = _distill_selected(cfg, capsys)

    assert rc == 2 and len(err) == 1 and err[0].startswith("ckd distill: error: scores file "), err
    assert str(path) in err[0] and "ckd score" in err[0]
    assert ("does not match its digest" if digest == "stale" else "picks epoch") in err[0]
    assert not store.results.rows_dir.is_dir() or not any(store.results.rows_dir.iterdir())
    assert not scores_fresh(cfg, SCORED)
    assert main(["score", str(QUICKSTART), *_scoring_overrides(Path(cfg.storage)), "--local"]) == 0
    assert read_selected(store, SCORED, "paper") == honest and scores_fresh(cfg, SCORED)


def test_forged_scores_behind_a_forged_pick_are_refused(scored):
    """The pick and its normalized scores forged together (digest resealed): the scores no longer
    follow from the recorded raw estimates."""
    _, store, scores = scored
    forged = _other_epoch(scores, "paper")
    for c in scores["checkpoints"]:
        c["normalized"]["paper"]["score"] = 2.0 if c["epoch"] == forged else 0.0
    scores["selected"]["paper"]["epoch"] = forged
    write_scores(store, SCORED, scores)
    with pytest.raises(ScoresError, match=r"do not follow from its recorded estimates.*re-run `ckd score"):
        read_selected(store, SCORED, "accuracy")  # any pick of the file: the file is not trusted


def test_a_forged_ensemble_pick_is_refused(scored):
    _, store, scores = scored
    members = scores["selected_ensemble"]["by_k"]["2"]["epochs"]
    scores["selected_ensemble"]["by_k"]["2"]["epochs"] = [e for e in range(1, 7) if e not in members][:2]
    write_scores(store, SCORED, scores)
    with pytest.raises(ScoresError, match=r"selected_ensemble K=2 .*re-run `ckd score"):
        read_selected_ensemble(store, SCORED, 2)


def test_a_scores_file_without_a_digest_is_refused_and_rescored(scored, capsys):
    cfg, store, scores = scored
    path = scores_path(store, SCORED)
    del scores[DIGEST_KEY]
    path.write_text(json.dumps(scores))  # a file of the format before digests
    rc, err = _distill_selected(cfg, capsys)
    assert rc == 2 and len(err) == 1 and "records no digest" in err[0] and "ckd score" in err[0], err
    assert not scores_fresh(cfg, SCORED)
    run_scoring(cfg)
    assert read_selected(store, SCORED, "paper") == scores["selected"]["paper"]["epoch"]


def test_a_forged_proxy_pick_is_caught_against_its_last_rung():
    """A proxy record (as proxy.run_proxy writes it) whose pick is not its last rung's best."""
    rung = {"rung": 0, "val_acc": {"1": [0.5, 0.6], "2": [0.7, 0.8]}, "val_acc_mean": {"1": 0.55, "2": 0.75}}
    record = {"candidates": [1, 2], "rungs": [rung], "pick": 2, "settings": {"kd_weight": 0.5}}
    scores = {
        "checkpoints": [{"epoch": 1, "sha256": "a"}, {"epoch": 2, "sha256": "b"}],
        "selected": {"proxy": {"epoch": 2, "degenerate": False, "fallback": None}},
        "proxy": {"proxy": record},
    }
    assert pick_problem(scores) is None
    scores["selected"]["proxy"]["epoch"] = 1
    assert "picks epoch 1" in pick_problem(scores)
    record["pick"] = 1
    assert "last rung picks epoch 2" in pick_problem(scores)
    rung["val_acc_mean"]["1"] = 0.9  # the mean forged too: it is not that of its seeds
    assert "not those of its seeds" in pick_problem(scores)
