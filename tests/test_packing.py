"""Packed students, batched ensemble teachers and the shared teacher-logit cache (issue 10).

That a member of a pack ends bit for bit where the same run trained alone ends is
``tests/test_pack_bits.py``'s; here: rows, resume, BatchNorm, bf16, pack sizes, batched teachers.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from harness.config_loading import load_config
from harness.data import make_loader
from harness.distill import distill_pack, distill_student
from harness.experiment import load_splits, open_store
from harness.kd import FrozenTeacher, kd_loss, kd_loss_members
from harness.models import create_model
from harness.packing import PackedModel, auto_pack_size
from harness.runs import ResultRow, Run, RunResolver
from harness.student_batches import PackBatches
from harness.sweep import make_packs, plan, sweep_runs
from harness.teacher_choices import TeacherRef
from harness.teacher_logits import LogitCache
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, tiny_overrides

RUNS = [  # differ in seed, teacher choice, temperature and kd_weight
    {"teacher_choice": "full", "seed": 0, "temperature": 4.0, "kd_weight": 0.5, "teacher_seed": 0},
    {"teacher_choice": "snapshot:[0.5,1.0]", "seed": 1, "temperature": 2.0, "kd_weight": 0.9, "teacher_seed": 1},
    {"teacher_choice": "none", "seed": 2, "temperature": 4.0, "kd_weight": 0.0, "teacher_seed": 0},
    {"teacher_choice": "full_ensemble:2", "seed": 0, "temperature": 3.0, "kd_weight": 0.7, "teacher_seed": 0},
]


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path_factory.mktemp("pack") / "runs"))
    for seed in cfg.teacher.seeds:
        train_trajectory(cfg, "cnn1d_small", int(seed))
    return cfg


def _run(cfg, run):
    return Run.from_dict(cfg, run)


def test_kd_loss_members_equals_kd_loss_of_each_member():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 8, 5), torch.randint(0, 5, (3, 8))
    soft = torch.softmax(torch.randn(3, 8, 5), -1)
    t, w = torch.tensor([1.0, 4.0, 2.0]), torch.tensor([0.5, 0.9, 0.0])
    got = kd_loss_members(logits, labels, soft, t, w)
    want = [kd_loss(logits[i], labels[i], soft[i], float(t[i]), float(w[i])) for i in range(3)]
    assert torch.allclose(got, torch.stack(want), atol=1e-6)
    assert got[2].item() == torch.nn.functional.cross_entropy(logits[2], labels[2]).item()  # w = 0: CE exactly


def _with_teachers(cfg, taught):
    """``cfg`` whose store has ``taught``'s trajectories (symlinked) and no results."""
    src, dst = open_store(taught).trajectories_dir, open_store(cfg).trajectories_dir
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        dst.symlink_to(src, target_is_directory=True)
    return cfg


def test_pack_rows_are_one_per_member_and_a_rerun_skips_them(taught, logs):
    cfg = copy.deepcopy(taught)
    rows = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]])
    assert [r["teacher_choice"] for r in rows] == ["full", "snapshot:[0.5,1.0]"]
    assert all(r["pack_size"] == 2 and len(r["val_acc_per_epoch"]) == cfg.student.epochs for r in rows)
    again = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]])
    assert [r["run_id"] for r in again] == [r["run_id"] for r in rows]
    assert logs.text.count("has a result already; skipping") == 2
    cfg.distill.teacher_choice, cfg.distill.seed = "full", 0  # RUNS[0] alone: found, not trained
    cfg.distill.temperature, cfg.distill.kd_weight, cfg.distill.teacher_seed = 4.0, 0.5, 0
    assert distill_student(cfg)["run_id"] == rows[0]["run_id"]


GOLDEN_RUN_IDS = {  # computed by the code before typed runs (harness/runs.py): stored rows stay found
    ("none", 0, 0.0): "93bbc2c5c9c5b209",
    ("full", 1, 0.9): "9ca801daeee8d3eb",
    ("snapshot:[0.5,1.0]", 0, 0.5): "9453acc957ae6d6d",
    ("full_ensemble:2", 1, 0.5): "90528c6887529a00",
    ("epoch:2", 0, 0.9): "fc6e7e79533657f9",
}


def test_run_ids_are_those_of_stored_rows(taught):
    cfg = copy.deepcopy(taught)
    cfg.sweep.teacher_choices = ["none", "full", "snapshot:[0.5,1.0]", "full_ensemble:2", "epoch:2"]
    cfg.sweep.seeds, cfg.sweep.temperature, cfg.sweep.kd_weight = [0, 1], [4.0], [0.5, 0.9]
    ids = {(p.run.teacher_choice, p.run.seed, p.run.kd_weight): p.run_id for p in plan(cfg)}
    assert {k: ids[k] for k in GOLDEN_RUN_IDS} == GOLDEN_RUN_IDS
    assert RunResolver(cfg).resolve(Run.from_distill(cfg)).run_id == "c74a43ab73987a23"  # full s0 T=4 w=0.5


def test_result_rows_read_back_as_typed_rows(taught, tmp_path):
    cfg = copy.deepcopy(taught)
    cfg.storage, cfg.student.epochs = str(tmp_path / "rows"), 1
    _with_teachers(cfg, taught)
    rows = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]], row_fields={"trial_id": "t1"})
    for row in rows:
        typed = ResultRow.from_dict(row)
        assert typed.to_dict() == row and list(typed.to_dict()) == list(row)  # same keys, order and values
        assert typed.extra == {"trial_id": "t1"} and set(typed.teacher_metrics) == {
            f"teacher_{s}_{m}" for s in ("val", "test") for m in ("acc", "loss", "confidence")
        }
    stored = {r["run_id"]: r for r in open_store(cfg).read_results()}
    assert all(ResultRow.from_dict(stored[r["run_id"]]).to_dict() == stored[r["run_id"]] for r in rows)


def test_resume_continues_a_pack_and_refuses_another_packs_state(taught, tmp_path):
    cfg = _with_teachers(copy.deepcopy(taught), taught)
    cfg.storage, cfg.student.epochs = str(tmp_path / "r"), 2
    _with_teachers(cfg, taught)
    states = []
    full = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]], on_epoch=lambda m, s: states.append(copy.deepcopy(s)))
    open_store(cfg).results.rows_dir.joinpath(f"{full[0]['run_id']}.json").unlink()
    open_store(cfg).results.rows_dir.joinpath(f"{full[1]['run_id']}.json").unlink()
    resumed = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]], resume=states[0])
    assert [r["final_val_acc"] for r in resumed] == pytest.approx([r["final_val_acc"] for r in full], abs=1e-9)
    with pytest.raises(Exception, match="belongs to run"):
        distill_pack(cfg, [_run(cfg, RUNS[2])], resume=states[0])
    # a member recorded before an interruption: the rest of the pack starts over, not refused
    open_store(cfg).results.rows_dir.joinpath(f"{resumed[1]['run_id']}.json").unlink()
    again = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]], resume=states[0])
    assert again[1]["final_val_acc"] == pytest.approx(full[1]["final_val_acc"], abs=1e-9)


def test_batched_ensemble_teacher_equals_sequential_members():
    torch.manual_seed(0)
    models = [create_model("cnn1d_small", num_classes=10, input_shape=(1, 40)).eval() for _ in range(3)]
    x = torch.randn(16, 1, 40)
    batched, sequential = FrozenTeacher(models, batched=True), FrozenTeacher(models, batched=False)
    assert batched.batched and not sequential.batched
    torch.testing.assert_close(batched.stacked_logits(x), torch.stack([m(x) for m in models]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched.soft_targets(x, 4.0), sequential.soft_targets(x, 4.0), rtol=1e-5, atol=1e-6)


def test_packed_batchnorm_members_match_their_models():
    torch.manual_seed(0)
    models = [create_model("resnet8", num_classes=10, input_shape=(3, 32, 32)) for _ in range(2)]
    packed = PackedModel(copy.deepcopy(models))
    x = torch.randn(2, 4, 3, 32, 32)
    out = packed(x)
    for i, m in enumerate(models):
        m.train()
        torch.testing.assert_close(out[i], m(x[i]), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            packed.member_state_dict(i)["stem.1.running_mean"], m.state_dict()["stem.1.running_mean"]
        )


def test_logit_cache_hits_are_the_teachers_logits_and_bad_files_are_recomputed(taught, logs):
    splits = load_splits(taught)
    cache = LogitCache(taught, open_store(taught), splits, torch.device("cpu"))
    ref = TeacherRef(RunResolver(taught).refs("cnn1d_small", 0, "full")[0].trajectory, taught.teacher.epochs)
    first = cache.logits(ref, "val")
    model = open_store(taught).trajectory(ref.trajectory).load_model(ref.epoch)
    torch.testing.assert_close(first, model(splits.val.x))
    again = LogitCache(taught, open_store(taught), splits, torch.device("cpu"))
    torch.testing.assert_close(again.logits(ref, "val"), first)
    assert (again.hits, again.misses) == (1, 0)
    cache.path(ref, "val").write_bytes(b"not a tensor")
    torch.testing.assert_close(
        LogitCache(taught, open_store(taught), splits, torch.device("cpu")).logits(ref, "val"), first
    )
    assert "recomputing" in logs.text
    with pytest.raises(ValueError, match="augmented"):
        LogitCache(
            taught, open_store(taught), type(splits)(**{**splits.__dict__, "augmented": True}), torch.device("cpu")
        ).logits(ref, "train")


def test_teachers_per_batch_give_the_cached_soft_targets(taught):
    """The per-batch path (augmented data) and the cached path see the same batches and targets."""
    splits = load_splits(taught)
    resolver = RunResolver(taught)
    members = [resolver.resolve(_run(taught, r)) for r in RUNS]  # a resolved run is what a member learns from
    cache = LogitCache(taught, open_store(taught), splits, torch.device("cpu"))
    cached = PackBatches(taught, splits, members, cache, torch.device("cpu"))
    per_batch = PackBatches(
        taught, type(splits)(**{**splits.__dict__, "augmented": True}), members, cache, torch.device("cpu")
    )
    assert cached.cached and not per_batch.cached
    for (xa, ya, sa), (xb, yb, sb) in zip(cached.epoch(1), per_batch.epoch(1)):
        torch.testing.assert_close(xa, xb)
        assert torch.equal(ya, yb)
        torch.testing.assert_close(sa, sb, rtol=1e-5, atol=1e-6)
    order = list(make_loader(splits.train, taught.student.batch_size, shuffle=True, seed=1, epoch=1))
    first = next(iter(cached.epoch(1)))
    torch.testing.assert_close(first[0][1], order[0][0])  # member 1 (seed 1) sees its own order


def test_auto_pack_size_spreads_runs_over_slots_within_a_parameter_budget():
    cpu = torch.device("cpu")
    assert auto_pack_size(25_000, cpu, runs=18, slots=2) == 9
    assert auto_pack_size(25_000, cpu, runs=1000, slots=2) == 63  # 16 packs: 8 full waves of 2
    assert auto_pack_size(2_000_000, cpu, runs=1000, slots=2) == 2
    assert auto_pack_size(50_000_000, cpu, runs=10, slots=1) == 1
    assert auto_pack_size(2_000_000, torch.device("cuda"), runs=1000, slots=1) == 63  # 16 packs: 15 x 63 + 55
    # balanced over the slots: whole waves, no last pack alone while slots idle (issue 22)
    assert auto_pack_size(25_000, cpu, runs=288, slots=4) == 36  # 8 packs of 36, not 4 x 64 + 32
    for runs, slots in [(288, 4), (1000, 2), (70, 2), (18, 2), (5, 4), (129, 2)]:
        size = auto_pack_size(25_000, cpu, runs=runs, slots=slots)
        packs = -(-runs // size)
        assert size <= 64 and (packs % slots == 0 or packs < slots), (runs, slots, size)
        waves = math.ceil(math.ceil(runs / 64) / slots)
        assert packs <= slots * waves  # no more packs than the whole waves the cap needs


def test_a_pack_trains_under_bf16_autocast(taught, tmp_path):
    cfg = _with_teachers(copy.deepcopy(taught), taught)
    cfg.storage, cfg.precision, cfg.student.epochs = str(tmp_path / "bf16"), "bf16", 1
    _with_teachers(cfg, taught)
    rows = distill_pack(cfg, [_run(cfg, r) for r in RUNS[:2]])
    assert all(0.0 < r["final_val_acc"] <= 1.0 for r in rows)


def test_a_pack_of_one_updates_its_batchnorm_statistics_like_its_model():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, input_shape=(3, 32, 32))
    packed = PackedModel([copy.deepcopy(model)])
    x = torch.randn(1, 4, 3, 32, 32)
    model.train()
    torch.testing.assert_close(packed(x)[0], model(x[0]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        packed.member_state_dict(0)["stem.1.running_mean"], model.state_dict()["stem.1.running_mean"]
    )
    assert int(packed.buffers["stem.1.num_batches_tracked"][0]) == 1


def test_a_pack_learns_from_teachers_per_batch_on_augmented_device_images(tmp_path, logs):
    """The CIFAR-shaped path: images on the device, augmented there; teachers run per batch."""
    cfg = load_config(
        QUICKSTART,
        tiny_overrides(
            tmp_path / "runs",
            **{
                "data.name": "synthetic_cifar10",
                "data.num_samples": 320,
                "data.options": "{num_test: 64}",
                "data.device_data": "on",
                "data.batch_size": 64,
                "student.batch_size": 64,
                "teacher.archs": "[resnet8]",
                "teacher.seeds": "[0,1]",
                "teacher.epochs": 2,
                "teacher.checkpoint_every": 1,
                "student.archs": "[resnet8]",
                "student.epochs": 1,
            },
        ),
    )
    for seed in (0, 1):
        train_trajectory(cfg, "resnet8", seed)
    runs = [
        Run.from_dict(cfg, r)
        for r in (
            {"teacher_choice": "snapshot:[1,2]", "seed": 0, "temperature": 4.0, "kd_weight": 0.5, "teacher_seed": 0},
            {"teacher_choice": "full", "seed": 1, "temperature": 2.0, "kd_weight": 0.9, "teacher_seed": 1},
        )
    ]
    rows = distill_pack(cfg, runs)
    assert "images resident on cpu, augmentation in batches there" in logs.text
    assert "teacher logits on val, test computed" in logs.text  # augmented train: no cached train logits
    assert [r["pack_size"] for r in rows] == [2, 2] and all(0.0 <= r["final_val_acc"] <= 1.0 for r in rows)
    assert all(r["teacher_val_acc"] > 0 for r in rows)  # teacher metrics from the logit cache (val/test)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sweep.pack_size=4", "sweep.scheduler=asha"], "the scheduler stops single trials"),
        (["sweep.pack_size=4", "sweep.search=random"], "a searcher proposes one run at a time"),
        (["sweep.pack_size=0"], "positive integer or auto"),
        (["sweep.pack_size=many"], "positive integer or auto"),
    ],
)
def test_pack_size_errors_name_the_key(tmp_path, overrides, message):
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match=f"sweep.pack_size.*{message}"):
        load_config(QUICKSTART, tiny_overrides(tmp_path) + overrides)


def test_packs_follow_the_grid_per_student_architecture(tmp_path):
    cfg = load_config(
        QUICKSTART, tiny_overrides(tmp_path, **{"sweep.student_archs": "[mlp_small,mlp_tiny]", "sweep.pack_size": 4})
    )
    runs = sweep_runs(cfg)
    packs = make_packs(cfg, runs)
    assert all(len({r.student_arch for r in p}) == 1 for p in packs)
    for arch in ("mlp_small", "mlp_tiny"):
        sizes = [len(p) for p in packs if p[0].student_arch == arch]
        n = sum(r.student_arch == arch for r in runs)
        assert sizes == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    assert [r for p in packs for r in p] == sorted(runs, key=lambda r: r.student_arch != runs[0].student_arch)
    asha = load_config(QUICKSTART, tiny_overrides(tmp_path, **{"sweep.scheduler": "asha"}))
    assert all(len(p) == 1 for p in make_packs(asha, sweep_runs(asha)))  # auto is 1 with a scheduler
