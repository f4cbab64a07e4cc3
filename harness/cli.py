"""``ckd``: the command line. Each verb loads and validates the config, then calls one stage.

    ckd run         CONFIG [key=value ...]   teachers -> score -> sweep -> leaderboard (idempotent)
    ckd teachers    CONFIG [key=value ...]   train every teacher trajectory (arch x seed), Ray actors
    ckd score       CONFIG [key=value ...]   score every checkpoint, select teachers (scorer actor)
    ckd sweep       CONFIG [key=value ...]   Ray Tune sweep of teacher choices x T x kd_weight x seeds
    ckd distill     CONFIG [key=value ...]   train one student (teacher_choice=..., temperature=...)
    ckd leaderboard CONFIG [key=value ...]   print + write leaderboard.{md,csv,html}
    ckd plot        CONFIG [key=value ...]   write the plots under <storage>/<name>/plots/
    ckd list        [models|datasets|choices|estimators]

``--local`` (teachers, score, sweep, run) runs in this process without Ray (= ``cluster.mode=local``).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from harness.cluster.errors import ClusterError
from harness.config import ConfigError, DistillConfig, load_config
from harness.store import StoreError

# `ckd distill CONFIG teacher_choice=full` is shorthand for distill.teacher_choice=full.
DISTILL_SHORTHAND = set(DistillConfig.__dataclass_fields__)


def _expand_shorthand(overrides: list[str]) -> list[str]:
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        out.append(f"distill.{o}" if key in DISTILL_SHORTHAND else o)
    return out


def _stage(name: str) -> Callable:
    def call(cfg):
        from harness.cluster import pipeline

        return getattr(pipeline, name)(cfg)

    return call


def _distill(cfg) -> None:
    from harness.distill import distill_student

    distill_student(cfg)


def _leaderboard(cfg) -> None:
    from harness.cluster.pipeline import leaderboard

    print(leaderboard(cfg), flush=True)


def _plot(cfg) -> None:
    from harness.cluster.pipeline import plot

    plot(cfg)


VERBS: dict[str, tuple[Callable, str, bool]] = {  # verb -> (stage, help, takes --local)
    "run": (_stage("run_pipeline"), "teachers -> score -> sweep -> leaderboard, end to end (skips done work)", True),
    "teachers": (_stage("teachers"), "train every (teacher arch x seed) trajectory in Ray actors, saving checkpoints", True),
    "score": (_stage("score"), "estimate MI for every checkpoint in a scorer actor; select single and ensemble teachers", True),
    "sweep": (_stage("sweep"), "Ray Tune sweep over sweep.teacher_choices x temperature x kd_weight x seeds", True),
    "distill": (_distill, "distill one student from distill.teacher_choice; append a result row", False),
    "leaderboard": (_leaderboard, "print the leaderboard and write leaderboard.{md,csv,html}", False),
    "plot": (_plot, "write plots: accuracy vs teacher epoch, information plane, ensembles", False),
}


def _list(what: str) -> None:
    from harness.data import list_datasets
    from harness.models import list_models
    from harness.teacher_choices import list_teacher_choices

    tables: dict[str, Callable[[], list[str]]] = {
        "models": list_models,
        "datasets": list_datasets,
        "choices": list_teacher_choices,
    }
    try:
        from harness.scoring import list_estimators

        tables["estimators"] = list_estimators
    except ImportError:
        pass
    for name, fn in tables.items():
        if what in ("all", name):
            print(f"{name}: {', '.join(fn())}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ckd", description="Knowledge distillation from model checkpoints: a benchmark harness.")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, (_, help_text, local) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("config", help="YAML config file, e.g. configs/quickstart.yaml")
        p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. teacher.epochs=10 data.batch_size=64")
        if local:
            p.add_argument("--local", action="store_true", help="run in this process without Ray (cluster.mode=local)")
    p = sub.add_parser("list", help="list registered models, datasets, teacher choices, estimators")
    p.add_argument("what", nargs="?", default="all", choices=["all", "models", "datasets", "choices", "estimators"])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    local = len(argv) > 1 and "--local" in argv[1:] and VERBS.get(argv[0], (None, None, False))[2]
    if local:  # `--local` may sit anywhere among the overrides (argparse stops at the first key=value)
        argv = [argv[0], *[a for a in argv[1:] if a != "--local"]]
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        _list(args.what)
        return 0
    overrides = _expand_shorthand(args.overrides) if args.verb == "distill" else list(args.overrides)
    if local or getattr(args, "local", False):
        overrides.append("cluster.mode=local")
    began = time.perf_counter()
    try:
        cfg = load_config(args.config, overrides)
        VERBS[args.verb][0](cfg)
    except (ConfigError, StoreError, ClusterError, FileNotFoundError, ValueError) as e:
        # ValueError: e.g. a teacher choice that names an epoch that was never saved
        print(f"ckd {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ckd {args.verb}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130
    print(f"ckd {args.verb}: done in {time.perf_counter() - began:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
