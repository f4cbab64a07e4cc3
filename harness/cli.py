"""``ckd``: the command line. Each verb loads and validates the config, then calls one stage.

    ckd teachers CONFIG [key=value ...]   train every teacher trajectory (arch x seed)
    ckd distill  CONFIG [key=value ...]   train one student (teacher_choice=..., temperature=...)
    ckd score    CONFIG [key=value ...]   score every checkpoint, select teachers
    ckd list     [models|datasets|choices|estimators]
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

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


def _teachers(cfg) -> None:
    from harness.teachers import run_teachers

    run_teachers(cfg)


def _distill(cfg) -> None:
    from harness.distill import distill_student

    distill_student(cfg)


def _score(cfg) -> None:
    from harness.scoring import run_scoring

    run_scoring(cfg)


VERBS: dict[str, tuple[Callable, str]] = {
    "teachers": (_teachers, "train every (teacher arch x seed) trajectory, saving checkpoints"),
    "distill": (_distill, "distill one student from distill.teacher_choice; append a result row"),
    "score": (_score, "estimate MI for every checkpoint; select single and ensemble teachers"),
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
    for verb, (_, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("config", help="YAML config file, e.g. configs/quickstart.yaml")
        p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. teacher.epochs=10 data.batch_size=64")
    p = sub.add_parser("list", help="list registered models, datasets, teacher choices, estimators")
    p.add_argument("what", nargs="?", default="all", choices=["all", "models", "datasets", "choices", "estimators"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        _list(args.what)
        return 0
    overrides = _expand_shorthand(args.overrides) if args.verb == "distill" else list(args.overrides)
    began = time.perf_counter()
    try:
        cfg = load_config(args.config, overrides)
        VERBS[args.verb][0](cfg)
    except (ConfigError, StoreError, FileNotFoundError, ValueError) as e:
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
