"""Scorer seconds per trajectory against the brute force it replaces (issue 23, points 1 and 4).

    python benchmarks/bench_scorer_cost.py [--config C] [--storage DIR] [--repeats 2] [--estimators ridge ...]
        [--student-epochs N] [--code DIR] [--compare-code OLD] [--out FILE] [dotlist...]

One setup (config + dotlist), one teacher trajectory (``teacher.archs[0]``, first seed), threads=1, side by side:
- **scorer**: ``score_trajectory`` from scratch (scores file removed) ``--repeats`` times (``--before-repeats``:
  the old side), the best by ``total_s``; load, features, per estimator, proxy, total from the scores file's
  ``timings``. ``scorer_s`` = total - proxy; ``scorer_with_proxy_s`` = total.
- **brute force**: one student per checkpoint (``epoch:E``, the config's student recipe, ``student.archs[0]``,
  seed 0) through ``harness.distill.retrain`` without Ray or recording (runs, splits, teacher logits with the
  logit cache emptied, training, validation, tests, weight hashes; no row written). ``alone``: K packs of one
  in turn; ``packed``: one pack of K. ``--student-epochs N``: N epochs, extrapolated as fixed part + epoch
  loop x (config epochs / N), marked ``extrapolated``.
- ratios ``scorer_s / brute_s`` (alone, packed).
``--code DIR`` measures another checkout's harness (subprocess, ``PYTHONPATH=DIR``, cwd outside any
checkout); ``--compare-code OLD`` measures OLD (before) and ``--code`` (after) on copies of the SAME
trajectory (trained by the after side; if the old code refuses it, it trains its own and says so);
``--train-only`` trains (or finds) it in ``--storage`` and stops. ``--synthetic-cifar`` (CIFAR-100 setups
without CIFAR): ``data.name=synthetic_cifar10`` (generated), the trajectory K copies of one untrained model
at the config's checkpoint epochs (cost does not depend on the weights); brute force extrapolated: K x config
epochs x s/step of a pack of one (``--steps`` after a warm-up) x steps per epoch of the real CIFAR-100 train
split (50,000 x (1 - val_fraction) / batch size).
``--measure-checkpoints K`` / ``--row-fraction F`` (setups too slow to score here): score K checkpoints
and F of the rows, scaled to the config (``scale_scorer``; ``scorer_measured`` keeps the measurement). Run it
under ``flock /tmp/bench.lock``; ``--storage`` keeps a trained trajectory for reuse.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
sys.path.append(str(ROOT))  # benchmarks.machine; never ahead of a --code / PYTHONPATH harness

CIFAR100_TRAIN_POOL = 50_000  # the real train set, val carved from it by val_fraction


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--storage", default=None, help="store to train the trajectory into / reuse (default: temporary)")
    p.add_argument("--repeats", type=int, default=2, help="scorer repeats (the best is kept)")
    p.add_argument("--before-repeats", type=int, default=None, help="scorer repeats of --compare-code's side")
    p.add_argument("--train-only", action="store_true", help="only train (or find) the trajectory in --storage")
    p.add_argument("--estimators", nargs="+", default=None, help="instead of the setup's default estimators")
    p.add_argument("--student-epochs", type=int, default=None, help="train brute-force students N epochs, scale")
    p.add_argument("--brute", choices=["both", "alone", "packed", "none"], default="both")
    p.add_argument("--code", default=str(ROOT), help="the checkout measured (after)")
    p.add_argument("--compare-code", default=None, help="an older checkout measured too (before)")
    p.add_argument("--synthetic-cifar", action="store_true", help="untrained trajectory on synthetic CIFAR")
    p.add_argument("--samples", type=int, default=22_000, help="synthetic pool (train + val) rows")
    p.add_argument("--steps", type=int, default=20, help="timed training steps (synthetic CIFAR)")
    p.add_argument("--measure-checkpoints", type=int, default=None, help="score K checkpoints, scale to the config's")
    p.add_argument("--row-fraction", type=float, default=None, help="score this fraction of the rows, scale up")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.add_argument("--preload", default=None, help="a .py run first in the after side (a stand-in, recorded)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. scoring.num_samples=500")
    return p.parse_args(argv)


def base_overrides(args: argparse.Namespace, storage: str) -> list[str]:
    """The dotlist every side loads the config with."""
    out = [f"storage={storage}", "tracking.mode=disabled", "threads=1", *args.overrides]
    if args.estimators:
        out.append(f"scoring.estimators=[{','.join(args.estimators)}]")
    if args.synthetic_cifar:
        out += ["data.name=synthetic_cifar10", f"data.num_samples={args.samples}", "data.num_workers=0"]
    return out


# ----------------------------------------------------------------------------- parent side


def run_side(code: str, job: dict, work: Path, label: str) -> dict:
    """This script's worker with ``code`` first on ``PYTHONPATH``, cwd outside any checkout."""
    spec, result = work / f"{label}-job.json", work / f"{label}-result.json"
    spec.write_text(json.dumps({**job, "result": str(result)}))
    env = {**os.environ, "PYTHONPATH": str(Path(code).resolve()), "WANDB_MODE": "disabled"}
    log = work / f"{label}.log"
    with log.open("w") as out:
        rc = subprocess.run(
            [sys.executable, str(HERE), "--worker", str(spec)], env=env, stdout=out, stderr=out, cwd=work
        )
    if rc.returncode != 0 or not result.is_file():
        raise SystemExit(f"{label} side failed ({rc.returncode}):\n{log.read_text()[-4000:]}")
    return json.loads(result.read_text()) | {"log": str(log)}


def table_line(setup: str, side: str, r: dict) -> str:
    """``| setup | side | estimators | K | scorer s | per estimator | brute alone | packed | ratios |``."""
    per = ", ".join(f"{k} {v:.1f}" for k, v in r["scorer"]["estimators_s"].items())
    b = r.get("brute", {})
    alone, packed = b.get("alone", {}).get("seconds"), b.get("packed", {}).get("seconds")
    ra, rp = r.get("ratio_alone"), r.get("ratio_packed")

    def f(x: float | None, spec: str, tail: str = "") -> str:
        return "-" if x is None else format(x, spec) + tail

    ext = " (extrapolated)" if b.get("extrapolated") else ""
    return (
        f"| {setup} | {side} | {r['checkpoints']} | {r['scorer']['scorer_s']:.1f} ({per}) | "
        f"{f(alone, '.1f', ext)} | {f(packed, '.1f', ext)} | "
        f"{f(ra and 100 * ra, '.1f', '%')} | {f(rp and 100 * rp, '.1f', '%')} |"
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        return worker(json.loads(Path(args.worker).read_text()))
    from benchmarks.machine import machine_info

    work = Path(tempfile.mkdtemp(prefix="bench-scorer-cost-"))
    storage = str(Path(args.storage).resolve()) if args.storage else str(work / "store")  # the worker runs elsewhere
    job = {"config": str(Path(args.config).resolve()), "repeats": args.repeats, "brute": args.brute}
    job |= {"student_epochs": args.student_epochs, "synthetic_cifar": args.synthetic_cifar, "steps": args.steps}
    job |= {"measure_checkpoints": args.measure_checkpoints, "row_fraction": args.row_fraction}
    report: dict = {"setup": {"config": args.config, "overrides": args.overrides, "estimators": args.estimators}}
    job["preload"] = str(Path(args.preload).resolve()) if args.preload else None
    report["preload"] = Path(args.preload).read_text() if args.preload else None
    report["machine_info"] = machine_info(1)
    # the trajectory, trained (or reused) by the after side in --storage; each side scores a copy
    prep = run_side(args.code, {**job, "overrides": base_overrides(args, storage), "only_train": True}, work, "train")
    report["trajectory"] = prep["trajectory"]
    if args.train_only:
        print(json.dumps(prep["trajectory"]))
        return prep
    sides = ([("before", args.compare_code)] if args.compare_code else []) + [("after", args.code)]
    report["sides"] = {}
    for label, code in sides:
        side_store = work / f"store-{label}"
        over = base_overrides(args, str(side_store))
        repeats = args.before_repeats if label == "before" and args.before_repeats else args.repeats
        side_job = {**job, "overrides": over, "source": prep["trajectory"]["dir"], "repeats": repeats}
        side_job["preload"] = None if label == "before" else job["preload"]
        res = run_side(code, side_job, work, label)
        report["sides"][label] = res | {"code": str(Path(code).resolve())}
        print(table_line(Path(args.config).stem, label, res), flush=True)
    if args.compare_code:
        b, a = report["sides"]["before"]["scorer"]["scorer_s"], report["sides"]["after"]["scorer"]["scorer_s"]
        report["scorer_speedup_before_over_after"] = round(b / a, 2)
    report["table"] = [table_line(Path(args.config).stem, k, v) for k, v in report["sides"].items()]
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work / "store-before", ignore_errors=True)
    shutil.rmtree(work / "store-after", ignore_errors=True)
    if not args.storage:
        shutil.rmtree(work / "store", ignore_errors=True)
    return report


# ----------------------------------------------------------------------------- worker side (its harness)


def worker(job: dict) -> dict:
    """One side's measurement, in this process's harness (``PYTHONPATH``); writes ``job["result"]``."""
    import logging

    import torch

    from harness.config_loading import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if job.get("preload"):  # e.g. config bounds the lead has not added yet
        runpy.run_path(job["preload"])
    full = load_config(job["config"], job["overrides"])
    cfg = load_config(job["config"], job["overrides"] + reduced_overrides(full, job))
    torch.set_num_threads(1)
    traj = ensure_trajectory(cfg, job)
    out: dict = {"trajectory": traj}
    if not job.get("only_train"):
        out["estimators"] = list(cfg.scoring.estimators)
        out["checkpoints"] = k = config_checkpoints(full)
        out["scorer"] = time_scorer(cfg, traj["name"], job["repeats"])
        rows = out["scorer"].pop("rows")
        out["scoring_rows"], out["train_rows"] = rows["sample"], rows["train"]
        if job.get("measure_checkpoints") or job.get("row_fraction"):  # measured less, scaled to the config
            out["scorer_measured"] = out["scorer"]
            out["scorer"] = scale_scorer(out["scorer"], len(traj["epochs"]), k, rows, scoring_rows(full))
        if job["brute"] != "none":
            out["brute"] = brute = (synthetic_brute if job["synthetic_cifar"] else time_brute)(cfg, traj, k, job)
            for way in ("alone", "packed"):
                if way in brute:
                    out[f"ratio_{way}"] = round(out["scorer"]["scorer_s"] / brute[way]["seconds"], 4)
    Path(job["result"]).write_text(json.dumps(out, indent=2) + "\n")
    return out


def config_checkpoints(cfg) -> int:
    """K: the checkpoints a trajectory of ``cfg`` saves."""
    from harness.teachers import checkpoint_epochs

    return len(checkpoint_epochs(cfg.teacher.epochs, cfg.teacher.checkpoint_every))


def scoring_rows(cfg) -> dict:
    """Rows every checkpoint sees: the scoring sample and the training-split pool (ridge / recon)."""
    from harness.scoring.sample import build_scoring_data

    data = build_scoring_data(cfg)
    return {"sample": len(data), "train": 0 if data.train_x is None else len(data.train_x)}


def reduced_overrides(cfg, job: dict) -> list[str]:
    """``--measure-checkpoints K``: a checkpoint every epochs / K; ``--row-fraction F``: F of the
    scoring sample and of each fitted estimator's training rows (for setups too slow to score here);
    ``feature_cache_mb`` shrunk alike, so that the conv stages are cached (or not) as for the config."""
    out, k, f, sc = [], job.get("measure_checkpoints"), job.get("row_fraction"), cfg.scoring
    if k or f:
        shrink = (k or config_checkpoints(cfg)) / config_checkpoints(cfg) * (f or 1.0)
        out.append(f"scoring.feature_cache_mb={float(sc.feature_cache_mb) * shrink}")
    if k:
        out.append(f"teacher.checkpoint_every={math.ceil(int(cfg.teacher.epochs) / k)}")
    if f:
        out.append(f"scoring.num_samples={max(2, round(sc.num_samples * f))}")
        out += [
            f"scoring.{e}.train_samples={max(4, round(getattr(sc, e).train_samples * f))}" for e in ("ridge", "recon")
        ]
    return out


def scale_scorer(t: dict, k_m: int, k: int, rows_m: dict, rows: dict) -> dict:
    """Measured scorer seconds scaled to ``k`` checkpoints and ``rows``: all per checkpoint (x k / k_m);
    features and recon linear in all rows, ridge (dual: rows x rows products) and kde quadratic, others linear."""
    ck, n = k / k_m, rows["sample"] / rows_m["sample"]
    r = (rows["sample"] + rows["train"]) / (rows_m["sample"] + rows_m["train"])
    power = {"features_s": r, "ridge": r * r, "recon": r, "kde": n * n}
    est = {e: round(s * ck * power.get(e, n), 3) for e, s in t["estimators_s"].items()}
    features, load = t["features_s"] * ck * r, t["load_s"] * ck
    rest = (t["scorer_s"] - t["load_s"] - t["features_s"] - sum(t["estimators_s"].values())) * ck
    out = dict(scorer_s=round(load + features + sum(est.values()) + rest, 3), load_s=round(load, 3))
    how = dict(checkpoints=[k_m, k], rows_measured=rows_m, rows=rows, per_checkpoint=ck, all_rows=round(r, 4))
    how |= dict(sample_rows=round(n, 4), note=" ".join(scale_scorer.__doc__.split(": ", 1)[1].split()))
    return out | dict(features_s=round(features, 3), estimators_s=est, scaled=how)


def ensure_trajectory(cfg, job: dict) -> dict:
    """The trajectory of ``teacher.archs[0]`` / first seed: copied from ``job["source"]`` when
    given (kept if this code accepts it), else trained (or reused when finished) or, for synthetic
    CIFAR, written as K copies of an untrained model."""
    from harness.config import seed_list
    from harness.experiment import open_store
    from harness.store import trajectory_name
    from harness.teachers import train_trajectory

    arch, seed = cfg.teacher.archs[0], seed_list(cfg.teacher)[0]
    store = open_store(cfg)
    traj = store.trajectory(trajectory_name(arch, cfg.data.name, seed))
    note = "reused or trained in this store"
    began = time.perf_counter()
    if job.get("source") and Path(job["source"]).resolve() != traj.dir.resolve():
        shutil.rmtree(traj.dir, ignore_errors=True)
        shutil.copytree(job["source"], traj.dir)
        note = "a copy of the after side's trajectory"
    try:
        manifest = write_untrained(cfg, arch, seed) if job["synthetic_cifar"] else train_trajectory(cfg, arch, seed)
    except Exception as e:  # the old code may refuse a trajectory the new code trained
        if not job.get("source"):
            raise
        shutil.rmtree(traj.dir, ignore_errors=True)
        note = f"trained by this side: the copy was refused ({type(e).__name__}: {str(e)[:200]})"
        manifest = write_untrained(cfg, arch, seed) if job["synthetic_cifar"] else train_trajectory(cfg, arch, seed)
    out = {"name": traj.name, "dir": str(traj.dir), "epochs": [c["epoch"] for c in manifest["checkpoints"]]}
    return out | {"note": note, "prepare_s": round(time.perf_counter() - began, 2), "arch": arch, "seed": seed}


def write_untrained(cfg, arch: str, seed: int) -> dict:
    """K copies of one fresh ``arch`` model saved at the config's checkpoint epochs through the
    store API, with the manifest ``train_trajectory`` writes (its config and hash): a finished
    trajectory whose scoring and distillation cost what a trained one costs."""
    from harness.config import config_hash
    from harness.data import derive_seed
    from harness.experiment import TrajectorySpec, load_splits, open_store
    from harness.models import create_model
    from harness.teachers import checkpoint_epochs, trajectory_config
    from harness.training import seed_everything

    spec = TrajectorySpec(arch, seed, cfg.data.name)
    traj = open_store(cfg).trajectory(spec.name)
    tconf = trajectory_config(cfg, spec)
    if traj.exists() and traj.is_finished() and traj.manifest().get("config_hash") == config_hash(tconf):
        return traj.manifest()
    splits = load_splits(cfg)
    seed_everything(derive_seed("teacher-init", arch, seed))
    model = create_model(arch, num_classes=splits.num_classes, input_shape=splits.input_shape)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    epochs = checkpoint_epochs(cfg.teacher.epochs, cfg.teacher.checkpoint_every)
    manifest = dict(name=spec.name, arch=arch, dataset=spec.dataset, seed=seed, epochs=cfg.teacher.epochs)
    manifest |= dict(checkpoint_every=cfg.teacher.checkpoint_every, config_hash=config_hash(tconf), config=tconf)
    manifest |= dict(finished=False, checkpoints=[], history=[], wall_time_s=0.0, untrained_copies=True)
    traj.dir.mkdir(parents=True, exist_ok=True)
    for e in epochs:
        payload = dict(model=weights, arch=arch, num_classes=splits.num_classes, epoch=e)
        payload["input_shape"] = list(splits.input_shape)
        metrics = {"train_acc": 0.0, "val_acc": 0.0, "test_acc": 0.0, "wall_time_s": 0.0}
        traj.save_checkpoint(e, payload, manifest, metrics)
        manifest["finished"] = e == epochs[-1]
        traj.write_manifest(manifest)
    return manifest


def time_scorer(cfg, name: str, repeats: int) -> dict:
    """``score_trajectory`` from scratch ``repeats`` times; the best run's timings."""
    from harness.experiment import open_store
    from harness.scoring.runner import score_trajectory
    from harness.scoring.sample import build_scoring_data
    from harness.scoring.scores_file import scores_path

    store = open_store(cfg)
    data = build_scoring_data(cfg)
    runs = []
    for r in range(repeats):
        scores_path(store, name).unlink(missing_ok=True)
        t0 = time.perf_counter()
        timings = score_trajectory(cfg, store, name, data)["timings"]
        runs.append({"wall_s": round(time.perf_counter() - t0, 3), **timings})
        print(f"[bench] scorer repeat {r}: {runs[-1]['wall_s']:.2f}s", flush=True)
    best = min(runs, key=lambda t: t["total_s"])
    proxy = float(best.get("proxy_s", 0.0))
    out = dict(scorer_s=round(best["total_s"] - proxy, 3), scorer_with_proxy_s=best["total_s"], proxy_s=proxy)
    out |= {k: best[k] for k in ("load_s", "features_s", "estimators_s")}
    out["all_totals_s"] = [t["total_s"] for t in runs]
    return out | {"rows": {"sample": len(data), "train": 0 if data.train_x is None else len(data.train_x)}}


def brute_runs(cfg, traj: dict) -> list:
    """One run per checkpoint: ``epoch:E`` with the config's student recipe, student seed 0."""
    from harness.runs import Run

    d = cfg.distill
    return [
        Run(traj["arch"], traj["seed"], cfg.student.archs[0], f"epoch:{e}", float(d.temperature), float(d.kd_weight), 0)
        for e in traj["epochs"]
    ]


def timed_retrain(cfg, runs: list) -> dict:
    """Seconds of ``retrain(cfg, runs)`` with an empty logit cache, and of its epoch loop alone."""
    import harness.distill as distill
    from harness.experiment import open_store

    shutil.rmtree(open_store(cfg).cache_dir / "logits", ignore_errors=True)
    loop, inner = [0.0], distill._epoch

    def epoch(job, e):  # the epoch loop's share (training + evaluation), for extrapolation
        t0 = time.perf_counter()
        try:
            return inner(job, e)
        finally:
            loop[0] += time.perf_counter() - t0

    distill._epoch = epoch
    try:
        t0 = time.perf_counter()
        distill.retrain(cfg, runs)
        wall = time.perf_counter() - t0
    finally:
        distill._epoch = inner
    return {"wall_s": wall, "epoch_loop_s": loop[0]}


def time_brute(cfg, traj: dict, k: int, job: dict) -> dict:
    """The brute force (``traj``'s checkpoints; ``k`` unused), alone (K packs of one) and packed (one pack of K)."""
    from harness.config_loading import load_config

    want = int(cfg.student.epochs)
    n = job.get("student_epochs") or want
    run_cfg = load_config(job["config"], [*job["overrides"], f"student.epochs={n}"]) if n != want else cfg
    runs, factor = brute_runs(run_cfg, traj), want / n
    out: dict = dict(student=run_cfg.student.archs[0], epochs=want, trained_epochs=n, extrapolated=n != want)
    out |= dict(factor=round(factor, 4), students=len(runs))
    ways = {"alone": job["brute"] in ("both", "alone"), "packed": job["brute"] in ("both", "packed")}
    if ways["alone"]:
        parts = [timed_retrain(run_cfg, [r]) for r in runs]
        out["alone"] = scaled({k: sum(p[k] for p in parts) for k in parts[0]}, factor)
    if ways["packed"]:
        out["packed"] = scaled(timed_retrain(run_cfg, runs), factor)
    return out


def scaled(t: dict, factor: float) -> dict:
    """Measured seconds and the config's: fixed part + epoch loop x ``factor``."""
    fixed = t["wall_s"] - t["epoch_loop_s"]
    out = dict(seconds=round(fixed + t["epoch_loop_s"] * factor, 3), measured_s=round(t["wall_s"], 3))
    return out | dict(epoch_loop_s=round(t["epoch_loop_s"], 3), fixed_s=round(fixed, 3))


def synthetic_brute(cfg, traj: dict, k: int, job: dict) -> dict:
    """K students x epochs x (seconds per step of a pack of one, measured) x CIFAR-100 steps per epoch."""
    import torch

    from harness.experiment import load_splits
    from harness.student_pack import new_students
    from harness.training import resolve_device

    device = resolve_device(cfg.device)
    splits = load_splits(cfg, device)
    arch, bs = cfg.student.archs[0], int(cfg.student.batch_size or cfg.data.batch_size)
    model, opt, _ = new_students(arch, [0], splits, cfg.student.optim, cfg.student.epochs, device)
    x = torch.randn(bs, *splits.input_shape, device=device)
    y = torch.randint(0, splits.num_classes, (bs,), device=device)
    teacher = None
    if cfg.data.augment:  # augmented batches: the students' teacher runs on every batch (FrozenTeacher)
        from harness.models import create_model

        teacher = create_model(cfg.teacher.archs[0], num_classes=splits.num_classes, input_shape=splits.input_shape)
        teacher = teacher.to(device).eval()

    def step() -> None:  # one KD step of a pack of one (+ the teacher's forward pass when augmented)
        with torch.no_grad():
            soft = teacher(x) if teacher is not None else torch.zeros(bs, splits.num_classes, device=device)
        z = model(x, shared=True)[0]
        kd = torch.nn.functional.kl_div(z.log_softmax(-1), soft.softmax(-1), reduction="batchmean")
        loss = torch.nn.functional.cross_entropy(z, y) + kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(job["steps"]):
        step()
    per_step = (time.perf_counter() - t0) / job["steps"]
    train_rows = int(CIFAR100_TRAIN_POOL * (1 - float(cfg.data.val_fraction)))
    steps = math.ceil(train_rows / bs)
    epochs = int(cfg.student.epochs)
    total = k * epochs * steps * per_step
    out = dict(student=arch, epochs=epochs, extrapolated=True, students=k, seconds_per_step=per_step, batch_size=bs)
    out |= dict(steps_per_epoch=steps, train_rows=train_rows, alone={"seconds": round(total, 1)})
    out["teacher_forward_per_step"] = teacher is not None
    return out | {"note": "K x epochs x steps/epoch x s/step (student fwd/bwd/SGD, teacher fwd if augmented); no eval"}


if __name__ == "__main__":
    main()
