"""``ckd``: the command line. Each verb loads and validates the config, then calls one stage.

    ckd run         CONFIG [key=value ...]   teachers -> score -> sweep -> leaderboard (idempotent)
    ckd teachers    CONFIG [key=value ...]   train every teacher trajectory (arch x seed), Ray actors
    ckd score       CONFIG [key=value ...]   score every checkpoint, select teachers (scorer actor)
    ckd sweep       CONFIG [key=value ...]   Ray Tune sweep of teacher choices x T x kd_weight x seeds
    ckd distill     CONFIG [key=value ...]   train one student (teacher_choice=..., temperature=...)
    ckd leaderboard CONFIG [key=value ...]   print + write the report (leaderboard, claims, selectors, plots, html)
    ckd claims      CONFIG [key=value ...]   the paper's three claims, checked on the results
    ckd plot        CONFIG [key=value ...]   write the plots under <storage>/<name>/plots/
    ckd verify      CONFIG [--runs K] [--seed S] [--trajectories] [--scores] [key=value ...]
                                             re-compute K recorded runs here; bit-identical or why not
    ckd config      CONFIG [key=value ...]   print the resolved, validated config (YAML) the other verbs would run
    ckd status      CONFIG [key=value ...]   what is done, running and queued, from the store (while a sweep runs)
    ckd compare     A B [--a k=v ...] [--b k=v ...] [--metric final|best_val] [--out DIR]
                                             two experiments' leaderboards side by side, paired B - A
    ckd list        [models|datasets|choices|estimators|selectors]
    ckd --version                            the package version and its git commit (+dirty: local changes)

``--local`` runs in this process without Ray (= ``cluster.mode=local``); ``-v`` / ``-q`` make the
log more or less verbose; every verb also logs to ``<storage>/<name>/logs/<verb>.log``.
``ckd leaderboard --latex`` (and ``ckd run --latex``) also writes ``<storage>/<name>/leaderboard.tex``.
Shorthands: ``reported=best_val`` is ``report.reported=best_val`` (every verb); ``teacher_choice=...``
and the other ``distill.*`` keys may drop their ``distill.`` in ``ckd distill`` and ``ckd config``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from harness import pipeline
from harness.cluster.errors import ClusterError
from harness.config import ConfigError, DistillConfig, ExperimentConfig
from harness.config_loading import load_config
from harness.experiment import preflight
from harness.logs import console_logging, file_log
from harness.objects import location
from harness.progress import MODES
from harness.progress import configure as configure_progress
from harness.registry import closest, known_names
from harness.store import StoreError

logger = logging.getLogger(__name__)

# Bare keys that stand for a section's key: `reported=best_val` is report.reported=best_val on
# every verb; `ckd distill CONFIG teacher_choice=full` is distill.teacher_choice=full.
SHORTHAND = {"reported": "report"}
DISTILL_SHORTHAND = dict.fromkeys(sorted(DistillConfig.__dataclass_fields__), "distill")
DISTILL_VERBS = ("distill", "config")  # verbs where the distill.* keys may drop their section
TOP_LEVEL_KEYS = tuple(ExperimentConfig.__dataclass_fields__)  # name, storage, device, ... (no hint for these)


def expand_shorthand(overrides: list[str], verb: str = "distill") -> list[str]:
    """``reported=x`` -> ``report.reported=x``; for ``distill`` (and ``config``) also
    ``teacher_choice=x`` -> ``distill.teacher_choice=x``; a near miss of a bare key is an error."""
    short = {**SHORTHAND, **(DISTILL_SHORTHAND if verb in DISTILL_VERBS else {})}
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        if key in short:
            out.append(f"{short[key]}.{o}")
            continue
        near = closest(key, sorted(short)) if "." not in key and key not in TOP_LEVEL_KEYS else None
        if near:
            raise ConfigError(f"config key {key!r}: not a key; did you mean {near!r} (= {short[near]}.{near})?")
        out.append(o)
    return out


@dataclass(frozen=True)
class Option:
    """A flag of one verb: its name and ``argparse`` keywords; its value goes to the verb's stage
    as the keyword argument ``dest``."""

    flag: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def takes_value(self) -> bool:
        return self.kwargs.get("action") not in ("store_true", "store_false")


@dataclass(frozen=True)
class Verb:
    """A verb: the ``harness.pipeline`` stage it calls, its help, whether its returned table is
    printed to stdout (the result; the log goes to stderr) and its own flags (``options``). A
    result with an ``exit_status`` (``ckd verify``'s) sets the command's exit status."""

    stage: Callable[..., Any]
    help: str
    prints: bool = False
    options: tuple[Option, ...] = ()


def verify(cfg: ExperimentConfig, **flags: Any) -> Any:
    """``ckd verify`` (``harness/verify.py``, imported when used)."""
    from harness.verify import verify as run_verify

    return run_verify(cfg, **flags)


def leaderboard(cfg: ExperimentConfig, latex: bool = False) -> str:
    """``ckd leaderboard``: the report (``pipeline.leaderboard``); ``--latex`` adds leaderboard.tex."""
    return pipeline.leaderboard(cfg, latex=latex)


def run(cfg: ExperimentConfig, latex: bool = False) -> str:
    """``ckd run``: the whole pipeline (``pipeline.run_pipeline``); ``--latex`` adds leaderboard.tex."""
    return pipeline.run_pipeline(cfg, latex=latex)


def status(cfg: ExperimentConfig) -> str:
    """``ckd status``: done / running / queued per stage, read from the store (``harness/status.py``)."""
    from harness.status import describe_status

    return describe_status(cfg)


def show_config(cfg: ExperimentConfig) -> str:
    """``ckd config``: the resolved, validated config as YAML (what the other verbs would run)."""
    return OmegaConf.to_yaml(cfg).rstrip("\n")


class VersionAction(argparse.Action):
    """``--version``: print ``version_line()`` and exit 0 (the git call only when asked)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_line())
        parser.exit()


def version_line() -> str:
    """``ckd-harness 0.1.0 (3402c3c)``, ``(3402c3c+dirty)`` when ``harness/`` differs from that
    commit; no commit outside a git checkout (e.g. an installed wheel)."""
    from harness.fingerprint import harness_version, source_commit

    commit, dirty = source_commit()
    where = "" if commit == "unknown" else f" ({commit[:7]}{'+dirty' if dirty else ''})"
    return f"ckd-harness {harness_version()}{where}"


LATEX = Option("--latex", {"action": "store_true", "help": "also write <storage>/<name>/leaderboard.tex (booktabs)"})


def count(text: str) -> int:
    """A count flag's value: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return int(text)


VERBS: dict[str, Verb] = {
    "run": Verb(
        run, "teachers -> score -> sweep -> leaderboard, end to end (skips done work)", prints=True, options=(LATEX,)
    ),
    "teachers": Verb(
        pipeline.teachers, "train every (teacher arch x seed) trajectory in Ray actors, saving checkpoints"
    ),
    "score": Verb(
        pipeline.score, "estimate MI for every checkpoint in a scorer actor; select single and ensemble teachers"
    ),
    "sweep": Verb(pipeline.sweep, "Ray Tune sweep over sweep.teacher_choices x temperature x kd_weight x seeds"),
    "distill": Verb(pipeline.distill, "distill one student from distill.teacher_choice; append a result row"),
    "leaderboard": Verb(
        leaderboard,
        "print the leaderboard; write the report: leaderboard.{md,csv,html}, claims, selectors, plots",
        prints=True,
        options=(LATEX,),
    ),
    "claims": Verb(
        pipeline.claims,
        "check the paper's three claims on the results (paired, with verdicts); write claims.{md,csv}",
        prints=True,
    ),
    "plot": Verb(pipeline.plot, "write plots: accuracy vs teacher epoch, information plane, ensembles"),
    "verify": Verb(
        verify,
        "re-train K recorded runs (chosen at random with seed S) here, each alone, and compare them with their "
        "rows: bit-identical, or the accuracy difference and the environment fields that differ; exit status 1 "
        "when a value differs under an identical environment",
        prints=True,
        options=(
            Option("--runs", {"type": count, "default": 3, "metavar": "K", "help": "how many to re-compute (3)"}),
            Option("--seed", {"type": int, "default": 0, "metavar": "S", "help": "seed of the random choice (0)"}),
            Option(
                "--trajectories",
                {"action": "store_true", "help": "also re-train K teacher trajectories and compare every checkpoint"},
            ),
            Option(
                "--scores",
                {"action": "store_true", "help": "also re-score K trajectories and compare estimates and picks"},
            ),
        ),
    ),
    "config": Verb(
        show_config,
        "print the resolved, validated config as YAML (file + overrides + shorthands); runs and writes nothing",
        prints=True,
    ),
    "status": Verb(
        status,
        "what is done, running and queued per stage (teachers, scores, sweep runs, failures), read from the "
        "store alone: no Ray, no training; safe while a sweep runs in another process",
        prints=True,
    ),
}
LOCAL_VERBS = ("run", "teachers", "score", "sweep", "distill")
NO_FILES_VERBS = ("config", "status")  # verbs that only read: no preflight, no log file
COMPARE_HELP = (
    "two experiments' leaderboards side by side: per row each side's accuracy and n, and where runs match "
    "(same teacher arch, student arch, choice, T, kd_weight, student seed, teacher seed) the paired difference "
    "B - A clustered by teacher trajectory, with its 95% interval; writes compare.{csv,md}. A and B are each a "
    "config file (overrides with --a / --b, e.g. --b name=long teacher.epochs=160) or an experiment folder "
    "<storage>/<name> (all its rows)"
)
LISTS = ("models", "datasets", "choices", "estimators", "selectors")


def print_list(what: str) -> None:
    """``ckd list``: registered names, naturally sorted; choices with syntax and an example."""
    kinds = {"models": "model", "datasets": "dataset", "estimators": "estimator", "selectors": "selector"}
    for name in LISTS:
        if what not in ("all", name):
            continue
        if name == "choices":
            from harness.teacher_choices import describe_teacher_choices

            print("choices:")
            for syntax, example, text in describe_teacher_choices():
                print(f"  {syntax:<22} e.g. {example:<22} {text}")
            print(f"  selectors for selected:<selector>: {', '.join(known_names('selector'))}")
        else:
            print(f"{name}: {', '.join(known_names(kinds[name]))}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ckd", description="Knowledge distillation from model checkpoints: a benchmark harness."
    )
    parser.add_argument("--version", action=VersionAction, help="print the version and git commit, then exit")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log detail (debug lines)")
    common.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    common.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="progress display: bar on a terminal, periodic log lines otherwise (auto)",
    )
    common.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, v in VERBS.items():
        p = sub.add_parser(verb, help=v.help, description=v.help, parents=[common])
        p.add_argument("config", help="YAML config file, e.g. configs/quickstart.yaml")
        p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. teacher.epochs=10 data.batch_size=64")
        for option in v.options:
            p.add_argument(option.flag, **option.kwargs)
        if verb in (*LOCAL_VERBS, "config"):
            p.add_argument("--local", action="store_true", help="run in this process without Ray (cluster.mode=local)")
        if verb in LOCAL_VERBS:
            if verb != "distill":
                p.add_argument(
                    "--dry-run",
                    action="store_true",
                    help="print the plan (work to do, grid size, resources) and exit; runs and writes nothing",
                )
            p.add_argument(
                "--restart",
                action="store_true",
                help="discard stored state made with another config and start that work over (restart=true)",
            )
    add_compare(sub, common)
    p = sub.add_parser("list", help="list registered models, datasets, teacher choices, estimators, selectors")
    p.add_argument("what", nargs="?", default="all", choices=["all", *LISTS])
    return parser


def add_compare(sub: Any, common: argparse.ArgumentParser) -> None:
    """``ckd compare A B [--a k=v ...] [--b k=v ...] [--metric M] [--out DIR]``."""
    p = sub.add_parser("compare", help=COMPARE_HELP.split(":")[0], description=COMPARE_HELP, parents=[common])
    p.add_argument("a", metavar="A", help="config file (e.g. configs/quickstart.yaml) or experiment folder")
    p.add_argument("b", metavar="B", help="config file or experiment folder")
    for side in ("a", "b"):
        p.add_argument(
            f"--{side}",
            dest=f"{side}_overrides",
            nargs="+",
            action="extend",
            default=[],
            metavar="KEY=VALUE",
            help=f"overrides of {side.upper()}'s config",
        )
    p.add_argument("--metric", choices=("final", "best_val"), help="the epoch reported (A's report.reported)")
    p.add_argument("--out", default=".", metavar="DIR", help="where compare.csv and compare.md go (.)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """argparse stops at the first key=value, so flags among the overrides are pulled out first
    (a verb's own flag with its value: ``--runs 5`` or ``--runs=5``)."""
    flags = {"--local", "--restart", "--dry-run", "--debug", "-v", "--verbose", "-q", "--quiet"}
    if len(argv) > 1 and argv[0] in VERBS:
        local = {"--local", "--restart", "--dry-run"}
        options = {o.flag: o for o in VERBS[argv[0]].options}
        moved, rest, args = [], [], iter(argv[1:])
        for a in args:
            option = options.get(a.split("=", 1)[0])
            if option is not None:
                value = next(args, None) if option.takes_value and "=" not in a else None
                moved += [a] if value is None else [a, value]
            elif a in flags and (a not in local or argv[0] in LOCAL_VERBS or (a == "--local" and argv[0] == "config")):
                moved.append(a)
            else:
                rest.append(a)
        argv = [argv[0], *moved, *rest]
    return build_parser().parse_args(argv)


def run_verb(args: argparse.Namespace) -> int:
    """Load + validate the config, then run the verb's stage with its log file open; the exit
    status (the result's ``exit_status`` where it has one, else 0); ``compare`` loads its two sides."""
    if args.verb == "compare":
        from harness.report.compare import run_compare

        a_over, b_over = (expand_shorthand(list(o), "compare") for o in (args.a_overrides, args.b_overrides))
        print(run_compare(args.a, args.b, a_over, b_over, args.metric, args.out), flush=True)
        return 0
    overrides = expand_shorthand(list(args.overrides), args.verb)
    if getattr(args, "local", False):
        overrides.append("cluster.mode=local")
    if getattr(args, "restart", False):
        overrides.append("restart=true")
    cfg = load_config(args.config, overrides)
    if args.verb not in ("run", "config"):  # an adaptive sweep's other verbs read its latest round
        from harness.adaptive import current_config

        cfg = current_config(cfg)
    if getattr(args, "dry_run", False):
        from harness.dryrun import describe

        print(describe(cfg, args.verb), flush=True)
        return 0
    verb = VERBS[args.verb]
    if args.verb in NO_FILES_VERBS:
        print(verb.stage(cfg), flush=True)
        return 0
    # before the log file: a refused config writes nothing
    preflight(cfg, needs_data=args.verb in (*LOCAL_VERBS, "verify"))
    log_file = location(str(cfg.storage)) / str(cfg.name) / "logs" / f"{args.verb}.log"  # objects: logs.file_log
    with file_log(log_file, level=logging.DEBUG if args.verbose else logging.INFO):
        result = verb.stage(cfg, **{o.dest: getattr(args, o.dest) for o in verb.options})
        if verb.prints:
            print(result, flush=True)
    return int(getattr(result, "exit_status", 0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.verb == "list":
        print_list(args.what)
        return 0
    configure_progress(mode=args.progress)
    with console_logging(args.verbose - args.quiet):
        return run_and_report(args)


def run_and_report(args: argparse.Namespace) -> int:
    """Run the verb; user mistakes are one line on stderr and exit code 2."""
    began = time.perf_counter()
    try:
        status = run_verb(args)
    except (ConfigError, StoreError, ClusterError, FileNotFoundError, ValueError) as e:
        # ValueError: e.g. a teacher choice that names an epoch that was never saved
        if args.debug:
            traceback.print_exc()
        print(
            f"ckd {args.verb}: error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
            file=sys.stderr,
        )
        return 2
    except OSError as e:  # disk full, file too large, name too long, permissions: one line naming the file
        if args.debug:
            traceback.print_exc()
        print(f"ckd {args.verb}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ckd {args.verb}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130
    logger.info(f"ckd {args.verb}: done in {time.perf_counter() - began:.1f}s")
    return status


# errno -> (what happened, what to do); ``{f}`` is the file. Writes are atomic, so a failed write
# leaves the previous file (or none), never half of one.
OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device holding {f}", "free some space or choose another storage=..."),
    errno.EDQUOT: ("disk quota exceeded writing {f}", "free some space or choose another storage=..."),
    errno.EFBIG: (
        "{f} would exceed the largest file allowed here (the file-size limit, `ulimit -f`, or the file system's)",
        "raise the limit or choose another storage=...",
    ),
    errno.ENAMETOOLONG: (
        "the path {f} is too long for the file system (a name over 255 bytes, or the whole path over its limit)",
        "choose a shorter name=..., sweep.name=... or storage=...",
    ),
    errno.EACCES: ("permission denied on {f}", "fix its permissions or choose another storage=..."),
    errno.EPERM: ("operation not permitted on {f}", "fix its permissions or choose another storage=..."),
    errno.EROFS: ("{f} is on a read-only file system", "choose a writable storage=..."),
    errno.ELOOP: ("{f} is a symbolic link (or a loop of them) where a file belongs", "remove the link"),
    errno.EMFILE: ("too many open files (opening {f})", "raise `ulimit -n` or lower threads/workers"),
    errno.EIO: ("input/output error on {f}", "check the disk (or network file system) holding it"),
}


def os_error_line(e: OSError) -> str:
    """One line for an ``OSError``: what happened to which file and what to do; then re-run
    (finished work is kept)."""
    f = str(e.filename) if e.filename is not None else "a file (run with --debug to see which)"
    if e.errno in OS_ERRORS:
        what, fix = OS_ERRORS[e.errno]
        what = what.format(f=f)
    else:
        what, fix = f"{f}: {e.strerror or str(e) or type(e).__name__}", "check it"
    return f"{what}; {fix}, then re-run (finished work is kept)"


if __name__ == "__main__":
    sys.exit(main())
