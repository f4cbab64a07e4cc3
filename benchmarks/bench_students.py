"""Fast students (issue 10): packed students vs the FLOP floor, trial set-up, batched ensembles, logit cache.

    python benchmarks/bench_students.py [--packs 1,4,16,64] [--epochs 3] [--threads 1] [--out results.json]

All measures run side by side in one process, on the quickstart's data (MNIST-1D, generated
locally) and models, with ``--threads`` torch threads (1 = what one sweep trial gets here):

- **pack**: seconds per student per training epoch of ``mlp_small`` (batch 32, the quickstart's
  student recipe) in packs of 1, 4, 16, 64 members, against the FLOP floor: the epoch's
  multiply-adds (forward x 3 for forward + backward) at the rate a large matrix product reaches
  on this machine with the same threads (``benchmarks/machine.py``'s ``machine_info``). Evaluation
  is timed apart, per policy: before issue 22 val + test after every epoch; now val every epoch
  and test twice at the end (final and best-val weights, the worst case) over ``student.epochs``.
- **eval batch**: one test-split pass per student for packs of 1, 16, 64 at eval batch sizes
  256, 1024, 4096 and the whole split (``data.eval_batch_size`` is picked from it).
- **set-up**: building a student pack of one (data from the cache, teacher logits from the
  logit cache or computed, model, optimizer) vs one training epoch of it.
- **ensemble**: soft targets of K = 2, 4, 8 teacher checkpoints (``cnn1d_small``, one batch of
  512) as one vmapped pass vs K passes one after another.
- **cache**: a checkpoint's teacher logits on train/val/test from the logit cache (hit) vs
  computing them (miss: load the checkpoint, three forward passes, write).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from harness.config_loading import load_config  # noqa: E402
from harness.data import derive_seed  # noqa: E402
from harness.experiment import load_splits, open_store  # noqa: E402
from harness.kd import FrozenTeacher  # noqa: E402
from harness.models import create_model  # noqa: E402
from harness.packing import predict_packed, train_packed_epoch  # noqa: E402
from harness.student_batches import PackBatches  # noqa: E402
from harness.student_pack import new_students  # noqa: E402
from harness.teacher_choices import TeacherRef  # noqa: E402
from harness.teacher_logits import LogitCache  # noqa: E402
from harness.training import make_optimizer, seed_everything  # noqa: E402

STUDENT = "mlp_small"


def mlp_flops(model: torch.nn.Module) -> int:
    """Forward FLOPs per sample of an MLP: 2 x multiply-adds of its linear layers."""
    return sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


class _Member:
    """A pack member (``student_batches.Learner``) without a teacher: uniform soft targets, the
    KD term is computed all the same."""

    def __init__(self, seed: int) -> None:
        self.seed, self.temperature, self.kd_weight, self.teachers = seed, 4.0, 0.5, ()


def _eval_split(model, split, batch: int, cpu: torch.device) -> float:
    """Seconds of one evaluation pass of ``model`` over ``split`` in batches of ``batch`` rows."""
    t0 = time.perf_counter()
    predict_packed(model, [(split.x[i : i + batch], split.y[i : i + batch]) for i in range(0, len(split), batch)], cpu)
    return time.perf_counter() - t0


def bench_pack(cfg, splits, size: int, epochs: int) -> dict:
    """Per-student train and eval seconds per epoch for a pack of ``size`` mlp_small students.
    Eval before (issue 22): val + test every epoch; after: val every epoch + test twice at the end
    (final weights and best-val copies: the worst case) spread over ``cfg.student.epochs``."""
    cpu = torch.device("cpu")
    members = [_Member(i) for i in range(size)]
    model, optimizer, _ = new_students(STUDENT, range(size), splits, cfg.student.optim, cfg.student.epochs, cpu)
    batches = PackBatches(cfg, splits, members, LogitCache(cfg, open_store(cfg), splits, cpu), cpu)
    train_s, val_s, test_s = [], [], []
    batch = cfg.data.eval_batch_size
    for epoch in range(1, epochs + 2):  # the first epoch warms up and is not counted
        t0 = time.perf_counter()
        train_packed_epoch(model, batches.epoch(epoch), optimizer, batches.loss)
        t1 = time.perf_counter()
        val, test = _eval_split(model, splits.val, batch, cpu), _eval_split(model, splits.test, batch, cpu)
        if epoch > 1:
            train_s.append(t1 - t0)
            val_s.append(val)
            test_s.append(test)
    train, val, test = (statistics.median(v) / size for v in (train_s, val_s, test_s))
    after = val + 2 * test / cfg.student.epochs
    return {
        "pack_size": size,
        "train_s_per_student_epoch": train,
        "eval_s_per_student_epoch_before": val + test,
        "eval_s_per_student_epoch": after,
        "eval_train_ratio_before": (val + test) / train,
        "eval_train_ratio": after / train,
    }


def bench_eval_batch(cfg, splits, sizes: list[int], batches: list[int | None], reps: int = 3) -> list[dict]:
    """Seconds per student of one test-split evaluation for packs of ``sizes`` at eval batch
    sizes ``batches`` (None: the whole split at once): what ``data.eval_batch_size`` is picked from."""
    cpu, out = torch.device("cpu"), []
    for size in sizes:
        model, _, _ = new_students(STUDENT, range(size), splits, cfg.student.optim, cfg.student.epochs, cpu)
        for b in batches:
            rows = b or len(splits.test)
            _eval_split(model, splits.test, rows, cpu)
            best = min(_eval_split(model, splits.test, rows, cpu) for _ in range(reps))
            out.append({"pack_size": size, "eval_batch": b or "whole", "s_per_student": best / size})
    return out


def bench_unpacked(cfg, splits, epochs: int) -> dict:
    """The reference: one student through ``training.train_epoch`` (an ordinary module, ``kd_loss``,
    unfused SGD, precomputed soft targets looked up by index), as students trained before packs."""
    from harness.data import TensorSplit, make_loader
    from harness.kd import kd_loss
    from harness.training import train_epoch

    cpu = torch.device("cpu")
    seed_everything(derive_seed("student-init", STUDENT, 0))
    model = create_model(STUDENT, num_classes=splits.num_classes, input_shape=splits.input_shape)
    optimizer = make_optimizer(model, cfg.student.optim)
    c = splits.num_classes
    soft, labels = torch.full((len(splits.train), c), 1.0 / c), splits.train.y
    indexed = TensorSplit(splits.train.x, torch.arange(len(splits.train)))
    loss = lambda logits, x, idx: kd_loss(logits, labels[idx], soft[idx], 4.0, 0.5)  # noqa: E731
    times = []
    for epoch in range(1, epochs + 2):
        batches = make_loader(indexed, cfg.student.batch_size, shuffle=True, seed=0, epoch=epoch, device=cpu)
        t0 = time.perf_counter()
        train_epoch(model, batches, optimizer, loss, cpu, lambda x, idx: labels[idx])
        if epoch > 1:
            times.append(time.perf_counter() - t0)
    return {"train_s_per_student_epoch": statistics.median(times)}


def trained_teachers(cfg, k: int) -> list[TeacherRef]:
    """``k`` short teacher trajectories of the quickstart's teacher (2 epochs each: set-up and
    ensemble costs do not depend on how well a teacher is trained)."""
    from harness.teachers import train_trajectory

    refs = []
    for seed in range(k):
        train_trajectory(cfg, cfg.teacher.archs[0], seed)
        refs.append(TeacherRef(f"{cfg.teacher.archs[0]}-{cfg.data.name}-s{seed}", cfg.teacher.epochs))
    return refs


def bench_setup(cfg, ref: TeacherRef) -> dict:
    """Set-up of a student pack of one (cache miss, then hit) vs one training epoch of it."""
    from harness.distill import _epoch, _start
    from harness.runs import Run, RunResolver

    for path in (open_store(cfg).cache_dir / "logits").glob("*"):
        path.unlink()
    run = {"teacher_choice": "full", "seed": 0, "temperature": 4.0, "kd_weight": 0.5, "teacher_seed": 0}
    resolved = RunResolver(cfg).resolve(Run.from_dict(cfg, run))
    times = {}
    for label in ("setup_miss_s", "setup_hit_s"):
        t0 = time.perf_counter()
        job = _start(cfg, [resolved])
        times[label] = time.perf_counter() - t0
    epochs = []
    for epoch in (1, 2, 3):
        t0 = time.perf_counter()
        _epoch(job, epoch)
        epochs.append(time.perf_counter() - t0)
    times["epoch_s"] = statistics.median(epochs[1:])
    return times


def bench_ensemble(cfg, refs: list[TeacherRef], sizes: list[int], reps: int = 20) -> list[dict]:
    """Soft targets of K checkpoints on one batch: one vmapped pass vs K passes."""
    store = open_store(cfg)
    x = load_splits(cfg).train.x[:512]
    out = []
    for k in sizes:
        models = [
            store.trajectory(refs[i % len(refs)].trajectory).load_model(refs[i % len(refs)].epoch) for i in range(k)
        ]
        row = {"k": k}
        for label, batched in (("batched_s", True), ("sequential_s", False)):
            teacher = FrozenTeacher(copy.deepcopy(models), batched=batched)
            teacher.soft_targets(x, 4.0)
            t0 = time.perf_counter()
            for _ in range(reps):
                teacher.soft_targets(x, 4.0)
            row[label] = (time.perf_counter() - t0) / reps
        out.append(row)
    return out


def bench_cache(cfg, ref: TeacherRef, reps: int = 5) -> dict:
    """Teacher logits of one checkpoint on train/val/test: computed (miss) vs read (hit)."""
    splits, cpu = load_splits(cfg), torch.device("cpu")
    miss, hit = [], []
    for _ in range(reps):
        for path in (open_store(cfg).cache_dir / "logits").glob("*"):
            path.unlink()
        for times in (miss, hit):
            cache = LogitCache(cfg, open_store(cfg), splits, cpu)
            t0 = time.perf_counter()
            for split in ("train", "val", "test"):
                cache.logits(ref, split)
            times.append(time.perf_counter() - t0)
    return {"miss_s": statistics.median(miss), "hit_s": statistics.median(hit)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packs", default="1,4,16,64")
    ap.add_argument("--ensembles", default="2,4,8")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            ROOT / "configs" / "quickstart.yaml",
            [
                f"storage={tmp}",
                "teacher.epochs=2",
                "teacher.checkpoint_every=1",
                "teacher.seeds=[0,1,2,3]",
                f"threads={args.threads}",
                "tracking.mode=disabled",
            ],
        )
        splits = load_splits(cfg)
        flops = (
            3
            * mlp_flops(create_model(STUDENT, num_classes=splits.num_classes, input_shape=splits.input_shape))
            * len(splits.train)
        )
        eval_flops = flops // 3 * (len(splits.val) + len(splits.test)) // len(splits.train)
        eval_flops_after = (
            flops // 3 * (len(splits.val) + 2 * len(splits.test) / cfg.student.epochs) / len(splits.train)
        )
        info = machine_info(args.threads)
        torch.set_num_threads(args.threads)
        rate = info["matmul_gflops"]
        packs = [bench_pack(cfg, splits, int(n), args.epochs) for n in args.packs.split(",")]
        eval_batch = bench_eval_batch(cfg, splits, [1, 16, 64], [256, 1024, 4096, None])
        unpacked = bench_unpacked(cfg, splits, args.epochs)
        unpacked["x_floor"] = unpacked["train_s_per_student_epoch"] / (flops / rate / 1e9)
        for p in packs:
            p["floor_s"] = flops / rate / 1e9
            p["x_floor"] = p["train_s_per_student_epoch"] / p["floor_s"]
            p["eval_x_floor"] = p["eval_s_per_student_epoch_before"] / (eval_flops / rate / 1e9)
            p["train_eval_x_floor"] = (p["train_s_per_student_epoch"] + p["eval_s_per_student_epoch"]) / (
                (flops + eval_flops_after) / rate / 1e9
            )
        refs = trained_teachers(cfg, 4)
        result = {
            "machine": f"{platform.machine()} {torch.get_num_threads()} thread(s)",
            "torch": torch.__version__,
            "machine_info": info,
            "peak_gflops": rate,
            "student_epochs": cfg.student.epochs,
            "eval_batch_size": cfg.data.eval_batch_size,
            "eval_gflop_per_epoch_before": eval_flops / 1e9,
            "eval_gflop_per_epoch": eval_flops_after / 1e9,
            "train_rows": len(splits.train),
            "train_gflop_per_epoch": flops / 1e9,
            "packs": packs,
            "unpacked": unpacked,
            "eval_batch": eval_batch,
            "setup": bench_setup(cfg, refs[0]),
            "ensemble": bench_ensemble(cfg, refs, [int(k) for k in args.ensembles.split(",")]),
            "cache": bench_cache(cfg, refs[0]),
        }
    print_table(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def print_table(r: dict) -> None:
    print(
        f"{r['machine']}, torch {r['torch']}: matmul peak {r['peak_gflops']:.1f} GFLOP/s; "
        f"mlp_small epoch = {r['train_gflop_per_epoch']:.3f} GFLOP on {r['train_rows']} rows"
    )
    print("pack  train s/st-ep  x floor  eval s/st-ep before  after  eval/train before  after  train+eval x floor")
    for p in r["packs"]:
        print(
            f"{p['pack_size']:4d}  {p['train_s_per_student_epoch']:14.4f}  {p['x_floor']:7.2f}  "
            f"{p['eval_s_per_student_epoch_before']:19.4f}  {p['eval_s_per_student_epoch']:.4f}  "
            f"{p['eval_train_ratio_before']:17.2f}  {p['eval_train_ratio']:5.2f}  {p['train_eval_x_floor']:18.2f}"
        )
    for e in r["eval_batch"]:
        print(f"eval pack {e['pack_size']:2d} batch {e['eval_batch']!s:>5}: {1e3 * e['s_per_student']:.2f} ms/student")
    u = r["unpacked"]
    print(
        f"reference (one student, ordinary module, unfused SGD): {u['train_s_per_student_epoch']:.4f} s/epoch, "
        f"{u['x_floor']:.2f} x floor"
    )
    s = r["setup"]
    print(
        f"set-up of a student: {s['setup_miss_s']:.3f}s (logit cache miss), {s['setup_hit_s']:.3f}s (hit); "
        f"one epoch {s['epoch_s']:.3f}s -> set-up/epoch {s['setup_hit_s'] / s['epoch_s']:.2f} (hit)"
    )
    for e in r["ensemble"]:
        print(
            f"ensemble K={e['k']}: batched {1e3 * e['batched_s']:.2f} ms, sequential {1e3 * e['sequential_s']:.2f} ms "
            f"-> {e['sequential_s'] / e['batched_s']:.2f}x"
        )
    c = r["cache"]
    speedup = c["miss_s"] / c["hit_s"]
    print(f"teacher logits, train+val+test: miss {c['miss_s']:.3f}s, hit {c['hit_s']:.4f}s -> {speedup:.0f}x")


if __name__ == "__main__":
    main()
