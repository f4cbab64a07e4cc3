"""Where a number was computed: the environment fingerprint (``harness/fingerprint.py``) on result
rows, trajectory manifests (one entry per start or resume that differs) and scores files, and
``state_sha256``, the bit-exact hash of a student's final weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.config_loading import load_config
from harness.experiment import open_store
from harness.fingerprint import differing, environment, state_sha256
from harness.row_schema import SCHEMA, row_digest, row_problem
from harness.runs import ResolvedRun, ResultRow, Run
from harness.scoring.freshness import scores_fresh
from harness.scoring.runner import run_scoring
from harness.scoring.scores_file import ScoresError, environment_of, read_scores, scores_path, write_scores
from harness.teachers import train_trajectory
from harness.training import resolve_device
from tests.helpers import QUICKSTART, tiny_overrides

TRAJ = "cnn1d_tiny-mnist1d-s0"
ISSUE_FIELDS = (  # issue 19, point 3
    "harness",
    "commit",
    "torch",
    "cuda",
    "cudnn",
    "device_name",
    "cpu_isa",
    "threads",
    "precision",
    "deterministic_algorithms",
)


def test_fingerprint_names_every_field_the_issue_asks_for() -> None:
    env = environment("cpu", 3, "bf16")
    assert set(ISSUE_FIELDS) <= set(env)
    assert (env["device"], env["threads"], env["precision"]) == ("cpu", 3, "bf16")
    assert env["torch"] == torch.__version__ and env["cpu_isa"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(env["device_name"], str) and env["device_name"]
    assert all(type(v) in (str, int, float, bool, type(None)) for v in env.values())  # plain data, as stored
    assert json.loads(json.dumps(env)) == env
    assert environment("cpu")["threads"] == torch.get_num_threads()


def test_differing_names_the_fields_that_changed() -> None:
    a = environment("cpu", 1)
    assert differing(a, dict(a)) == []
    assert differing(a, {**a, "threads": 2, "precision": "bf16"}) == ["precision", "threads"]
    assert differing(a, None) == sorted(a) and differing(None, None) == []


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))  # float and int64 entries
    return {**model.state_dict(), "half": torch.randn(5).to(torch.bfloat16), "mask": torch.tensor([True, False])}


def test_state_sha256_is_bit_exact_and_order_free() -> None:
    state = _state()
    digest = state_sha256(state)
    assert len(digest) == 64 and digest == state_sha256({k: v.clone() for k, v in state.items()})
    assert state_sha256(dict(reversed(list(state.items())))) == digest  # key order does not matter
    flipped = state["0.weight"].clone()
    flipped.view(torch.int32)[1, 2] ^= 1  # one bit of one float
    assert state_sha256({**state, "0.weight": flipped}) != digest
    assert state_sha256({**state, "0.weight": state["0.weight"].t().contiguous().t()}) == digest  # layout-free
    same_bits = state["0.weight"].view(torch.int32)  # the same bytes as another dtype
    assert state_sha256({**state, "0.weight": same_bits}) != digest
    renamed = {("x" if k == "mask" else k): v for k, v in state.items()}
    assert state_sha256(renamed) != digest
    with pytest.raises(TypeError, match="'step' is of type int, not a tensor"):
        state_sha256({**state, "step": 3})


def _row(tmp_path: Path, **kwargs) -> dict:
    """A row built the way ``distill`` builds one (a no-teacher run, two epochs), as JSON reads it back."""
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path / "runs"))
    resolved = ResolvedRun(Run("cnn1d_small", 0, "mlp_small", "none", 4.0, 0.5, 0), (), "probs", "run0")
    history = [{"epoch": 1, "val_acc": 0.5, "test_acc": 0.4}, {"epoch": 2, "val_acc": 0.6, "test_acc": 0.5}]
    row = ResultRow.of(cfg, resolved, {}, history, 1.5, 1, "cpu", inputs={"teachers": [], "data": "k"}, **kwargs)
    return json.loads(json.dumps(row.to_dict()))


def test_row_carries_environment_and_weights_and_round_trips(tmp_path: Path) -> None:
    env, weights = environment("cpu", 1), state_sha256(_state())
    row = _row(tmp_path, environment=env, weights_sha256=weights)
    assert list(row)[-4:] == ["inputs", "environment", "weights_sha256", "digest"]
    assert row["environment"] == env and row["weights_sha256"] == weights
    assert row_problem(row) is None and row["digest"] == row_digest(row)
    typed = ResultRow.from_dict(row)
    assert typed.environment == env and typed.weights_sha256 == weights
    assert "environment" not in typed.extra and "weights_sha256" not in typed.extra
    assert not any(k.startswith("environment") for k in typed.teacher_metrics)
    assert typed.to_dict() == row
    unknown = _row(tmp_path, environment=env)  # weights not known: null next to the environment
    assert unknown["weights_sha256"] is None and row_problem(unknown) is None
    assert ResultRow.from_dict(unknown).to_dict() == unknown


def test_row_without_the_new_keys_still_counts(tmp_path: Path) -> None:
    row = _row(tmp_path)
    assert "environment" not in row and "weights_sha256" not in row
    assert row_problem(row) is None and ResultRow.from_dict(row).to_dict() == row


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("environment", "cpu"),
        ("environment", ["cpu", 1]),
        ("environment", None),
        ("weights_sha256", "abc"),
        ("weights_sha256", "A" * 64),
        ("weights_sha256", 7),
    ],
)
def test_malformed_environment_or_weights_are_refused(tmp_path: Path, key: str, value: object) -> None:
    row = _row(tmp_path, environment=environment("cpu", 1), weights_sha256="0" * 64)
    problem = row_problem({**row, key: value})
    assert problem is not None and problem[0] == SCHEMA and problem[1].startswith(key), problem


def _cfg(storage: Path, threads: int, **extra: object):
    overrides = {
        "teacher.archs": "[cnn1d_tiny]",
        "teacher.seeds": "[0]",
        "teacher.epochs": 3,
        "teacher.checkpoint_every": 2,
        "data.num_samples": 2000,  # half the tiny data: fingerprints do not depend on it
        "scoring.estimators": "[accuracy,binning]",
        "scoring.num_samples": 80,
        "scoring.folds": 2,
        "scoring.bootstrap": 100,
        "scoring.ensemble_sizes": "[2]",
        **extra,
    }
    return load_config(QUICKSTART, tiny_overrides(storage, threads=threads, **overrides))


def _crash_after(epoch: int):
    def on_epoch(e: int, metrics: dict) -> None:
        if e == epoch:
            raise KeyboardInterrupt

    return on_epoch


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """A 3-epoch trajectory trained with 1 thread (epoch 1, no manifest on disk yet), resumed with
    2 (epoch 2, a checkpoint), then with 1 again (epoch 3): three fingerprints."""
    storage, before = tmp_path_factory.mktemp("mixed") / "runs", torch.get_num_threads()
    try:
        with pytest.raises(KeyboardInterrupt):
            train_trajectory(_cfg(storage, 1), "cnn1d_tiny", 0, on_epoch=_crash_after(1))
        with pytest.raises(KeyboardInterrupt):
            train_trajectory(_cfg(storage, 2), "cnn1d_tiny", 0, on_epoch=_crash_after(2))
        train_trajectory(_cfg(storage, 1), "cnn1d_tiny", 0)
    finally:
        torch.set_num_threads(before)
    return storage


def test_manifest_records_each_fingerprint_a_trajectory_trained_under(mixed: Path) -> None:
    cfg = _cfg(mixed, 1)
    manifest = open_store(cfg).trajectory(TRAJ).manifest()
    device = resolve_device(cfg.device)
    assert manifest["finished"] and manifest["environment"] == environment(device, 1, cfg.precision)
    envs = manifest["environments"]
    assert [(e["from_epoch"], e["threads"]) for e in envs] == [(1, 1), (2, 2), (3, 1)]
    assert all(differing(a, b) == ["from_epoch", "threads"] for a, b in zip(envs, envs[1:]))
    assert {k: v for k, v in envs[-1].items() if k != "from_epoch"} == manifest["environment"]


def test_resume_under_the_same_fingerprint_adds_no_entry(tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        train_trajectory(_cfg(storage, 1), "cnn1d_tiny", 0, on_epoch=_crash_after(2))
    manifest = train_trajectory(_cfg(storage, 1), "cnn1d_tiny", 0)
    assert [(e["from_epoch"], e["threads"]) for e in manifest["environments"]] == [(1, 1)]


def test_scores_file_carries_the_scorers_fingerprint(mixed: Path, tmp_path: Path) -> None:
    cfg = _cfg(mixed, 1)
    before = torch.get_num_threads()
    try:
        run_scoring(cfg)  # set_threads(cfg, "scorer"): 1
    finally:
        torch.set_num_threads(before)
    store = open_store(cfg)
    scores = read_scores(store, TRAJ)  # digest checked
    assert environment_of(scores) == environment(resolve_device(cfg.device), 1, "fp32")
    assert environment_of({}) is None and environment_of({"environment": "cpu"}) is None
    assert scores_fresh(cfg, TRAJ)
    path = scores_path(store, TRAJ)
    sealed = path.read_text()
    edited = json.loads(sealed)
    edited["environment"]["threads"] = 8  # the digest covers the fingerprint
    path.write_text(json.dumps(edited))
    with pytest.raises(ScoresError, match="does not match its digest"):
        read_scores(store, TRAJ)
    write_scores(store, TRAJ, edited)  # re-sealed: another scorer's fingerprint is no reason to rescore
    assert environment_of(read_scores(store, TRAJ))["threads"] == 8 and scores_fresh(cfg, TRAJ)
    path.write_text(sealed)
