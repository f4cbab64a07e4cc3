"""Adaptive sweeps: ``ckd run`` in rounds until every comparison of interest is decided.

With ``sweep.until=decided`` the study runs round after round (``harness/adaptive_rounds.py``:
round ``r`` is the design ``(n trajectories, m students each)``, its config and its compute).
After each round every still-undecided comparison (the paper's claims, or the ``report.compare``
rows against ``report.reference``) gets one *look* of a group-sequential test
(``harness/report/sequential.py``: Lan-DeMets alpha spending at ``report.alpha`` / K, Bonferroni over
the K comparisons; the significance-level approach for the t-test of trajectory means), so the
answers keep their error rates however many rounds look. A decided comparison keeps its answer.
What is still undecided decides the next round (``harness/adaptive_plan.py``: trajectories or
student seeds, whichever buys more information per device hour, within ``sweep.budget``). It stops
when every comparison is decided, when the budget has no room for another round (that look spends
all the alpha left), or after ``sweep.max_rounds``.

The journal ``<storage>/<name>/adaptive/rounds.json`` records the design, each round (planned /
done, its looks, the compute spent, the plan it led to) and why it stopped; it is written
atomically before and after each round, so a killed run resumes the round it was in (the stages
skip finished work) and never re-draws a look. Its design (alpha, margin, spending, budget, rounds)
cannot change between looks: a changed one is refused, or started over with ``--restart``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.adaptive_plan import (
    GROWTH,
    Budget,
    Compute,
    Costs,
    Need,
    can_continue,
    final_design,
    plan_round,
    round_cost,
    within,
)
from harness.adaptive_rounds import (
    Comparison,
    budget_of,
    comparisons,
    design_rows,
    initial_design,
    round_board,
    round_config,
    spent,
    unit_costs,
)
from harness.config import ConfigError, ExperimentConfig, Until
from harness.experiment import open_store
from harness.fileio import atomic_write_json, read_json_object
from harness.objects import ObjectPath
from harness.report.sequential import LookResult, boundaries, decide, information, look
from harness.report.stats import UNDECIDED, variance_components

logger = logging.getLogger(__name__)

JOURNAL = Path("adaptive") / "rounds.json"
MAX_JOURNAL_BYTES = 32 * 2**20
VERSION = 1
DESIGN_KEYS = ("alpha", "margin", "spending", "budget", "max_rounds", "growth")


def is_adaptive(cfg: ExperimentConfig) -> bool:
    return cfg.sweep.until == Until.decided


def journal_path(cfg: ExperimentConfig) -> Path | ObjectPath:
    """``<storage>/<name>/adaptive/rounds.json``, a file or an object: rewritten whole by its one
    writer, the driver (``atomic_write_json``: a rename, or one PUT)."""
    return open_store(cfg).root / JOURNAL


def load_journal(cfg: ExperimentConfig) -> dict | None:
    """The rounds journal, or None before round 0."""
    path = journal_path(cfg)
    if not path.exists():
        return None
    fix = "delete it (or run with --restart) to start the adaptive sweep over; trained work is kept"
    return read_json_object(path, MAX_JOURNAL_BYTES, "adaptive rounds journal", fix)


def _design(cfg: ExperimentConfig) -> dict:
    b = cfg.sweep.budget
    return {
        "alpha": float(cfg.report.alpha),
        "margin": float(cfg.report.equivalence_margin) / 100.0,
        "spending": str(cfg.sweep.spending),
        "budget": {
            "teacher_epochs": b.teacher_epochs,
            "student_epochs": b.student_epochs,
            "device_hours": b.device_hours,
        },
        "max_rounds": int(cfg.sweep.max_rounds),
        "growth": float(cfg.sweep.growth),
    }


def _changed(cfg: ExperimentConfig, journal: dict) -> list[str]:
    """The design keys the stored journal has other values for than ``cfg``."""
    design = _design(cfg)
    return [k for k in DESIGN_KEYS if journal.get("design", {}).get(k) != design[k]]


def _open_journal(cfg: ExperimentConfig) -> dict | None:
    """The stored journal if its design is this config's; ``--restart`` drops a different one."""
    journal = load_journal(cfg)
    if journal is None:
        return None
    changed = _changed(cfg, journal)
    if not changed:
        return journal
    if cfg.restart:
        logger.warning(f"[adaptive] --restart: the rounds journal of another design ({', '.join(changed)}) is dropped")
        journal_path(cfg).unlink()
        return None
    was = ", ".join(f"{k}={journal.get('design', {}).get(k)!r}" for k in changed)
    raise ConfigError(
        f"the adaptive sweep in {journal_path(cfg).parent} was designed with {was}; a group-sequential design "
        "cannot change between looks: restore those settings, or run with --restart to start the rounds over "
        "(trained work is kept)"
    )


def _save(cfg: ExperimentConfig, journal: dict) -> None:
    path = journal_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, journal)


def current_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config of the latest round (round 0 before any), for the verbs that read one round."""
    if not is_adaptive(cfg):
        return cfg
    journal = load_journal(cfg)
    if journal is None or not journal.get("rounds"):
        return round_config(cfg, *initial_design(cfg))
    last = journal["rounds"][-1]
    return round_config(cfg, int(last["n"]), int(last["m"]))


# ---------------------------------------------------------------------------------------------
# the rounds


def run_rounds(cfg: ExperimentConfig, run_round: Callable[[ExperimentConfig], Any]) -> tuple[ExperimentConfig, dict]:
    """Run (or resume) the rounds: ``run_round(round_cfg)`` trains one round's teachers, scores
    and students; returns the last round's config and the journal."""
    journal = _open_journal(cfg)
    if journal is None:
        _check_round_zero(cfg)
        journal = new_journal(_design(cfg), *initial_design(cfg))
        _save(cfg, journal)
    while True:
        rnd = journal["rounds"][-1]
        rcfg = round_config(cfg, int(rnd["n"]), int(rnd["m"]))
        if rnd["status"] == "planned":
            logger.info(
                f"[adaptive] round {rnd['round']}: {rnd['n']} trajectories x {rnd['m']} student(s) each"
                + (f" ({rnd['why']})" if rnd.get("why") else "")
            )
            run_round(rcfg)  # a failed stage raises: the round stays planned and a re-run resumes it
            _close_round(cfg, rcfg, journal)
            _save(cfg, journal)
            logger.info(f"[adaptive] {_round_line(journal, rnd)}")
        if journal.get("stopped"):
            logger.info(f"[adaptive] stopped: {journal['stopped']['text']}")
            return rcfg, journal


def _check_round_zero(cfg: ExperimentConfig) -> None:
    """Round 0 (the config's own design) must fit the budget: refused before any compute."""
    n, m = initial_design(cfg)
    rcfg = round_config(cfg, n, m)
    cost = round_cost(0, 0, n, m, unit_costs(rcfg))
    if not within(Compute(), cost, budget_of(cfg)):
        raise ConfigError(
            f"config key 'sweep.budget': round 0 ({n} trajectories x {m} students, the config's teacher.seeds "
            f"and sweep.seeds) alone needs {_compute_text(cost)}, more than the budget; raise sweep.budget or "
            "start smaller"
        )


def _planned(r: int, n: int, m: int, why: str = "") -> dict:
    return {"round": r, "n": n, "m": m, "status": "planned", "why": why}


def _round_line(journal: dict, rnd: dict) -> str:
    looks = rnd.get("looks", {})
    answers = ", ".join(f"{k} {v['answer']}" for k, v in looks.items()) or "no comparison looked at"
    return f"round {rnd['round']} done ({rnd['n']} x {rnd['m']}): {answers}"


def _history(journal: dict, key: str) -> tuple[list[LookResult], list[int]]:
    """The earlier looks of comparison ``key`` and the rounds they were made in."""
    fields = set(LookResult.__dataclass_fields__)
    looks, rounds = [], []
    for rnd in journal["rounds"]:
        if rnd["status"] == "done" and key in rnd.get("looks", {}):
            looks.append(LookResult(**{k: v for k, v in rnd["looks"][key].items() if k in fields}))
            rounds.append(int(rnd["round"]))
    return looks, rounds


def _need(c: Comparison) -> Need:
    """What the planner and the information fractions may know of a comparison: its variance
    components *blinded* to the difference (Kieser & Friede's blinded re-estimation): the
    trajectory part from the second moment of the trajectory means about 0, not about their mean.
    The unblinded spread is the t-test's denominator: choosing students (the same trajectories,
    the same df) when it happens to be small kept testing an understated spread, and raised the
    type-I error of 1,000 simulated sweeps to 0.076 at alpha 0.05 (``harness/adaptive_sim.py``)."""
    groups = [np.asarray(v, dtype=float) for v in c.diffs.values()]
    if not groups:
        return Need(c.key, math.nan, None, None)
    _, sd_w = variance_components(groups)
    means = np.array([g.mean() for g in groups])
    if len(groups) < 2:
        return Need(c.key, float(means.mean()), None, sd_w)
    share = (sd_w or 0.0) ** 2 * float(np.mean([1.0 / len(g) for g in groups]))
    sd_b = math.sqrt(max(0.0, float(np.mean(means**2)) - share))
    return Need(c.key, float(means.mean()), sd_b, sd_w)


def _fraction(need: Need, n: int, m: int, top: tuple[int, int], prev: float, last: bool) -> float:
    """The look's information fraction: information now over that of the design the budget
    reaches (``top``), at the comparison's variance estimates; 1 at the last look; increasing."""
    if last:
        return 1.0
    now = information(need.sd_between, need.sd_within, n, m)
    most = information(need.sd_between, need.sd_within, *top)
    f = now / most if now and most else n / max(top[0], n)
    return min(max(f, prev + 1e-3), 1.0)  # at 1 (more information than foreseen) this look spends the rest


def _close_round(cfg: ExperimentConfig, rcfg: ExperimentConfig, journal: dict) -> None:
    """The round's comparisons and compute, read from the store, then ``close_round``."""
    what = f"report.compare={list(cfg.report.compare)}" if cfg.report.compare else "the paper's claims"
    rows = design_rows(rcfg)  # one read of the store's rows for the looks and the compute
    comps, costs, used = comparisons(cfg, round_board(rcfg, rows)), unit_costs(rcfg), spent(rcfg, rows)
    if cfg.sweep.budget.device_hours is None:  # hours as the planner weighs them: nominal, from FLOPs
        nominal = (
            used.teacher_epochs * costs.hours_per_teacher_epoch + used.student_epochs * costs.hours_per_student_epoch
        )
        journal["rounds"][-1]["measured_hours"] = used.device_hours
        used = Compute(used.teacher_epochs, used.student_epochs, nominal)
    close_round(journal, comps, used, costs, budget_of(cfg), what)


def close_round(
    journal: dict, comps: list[Comparison], used: Compute, costs: Costs, budget: Budget, what: str = "comparisons"
) -> None:
    """Record the latest round's looks and compute, and the next round's plan or why the sweep
    stops (pure: the journal is the only state; ``harness/adaptive_sim.py`` runs it on simulated
    data)."""
    rnd, design = journal["rounds"][-1], journal["design"]
    r, n, m = int(rnd["round"]), int(rnd["n"]), int(rnd["m"])
    if "comparisons" not in journal:  # the family is fixed at the first look
        journal["comparisons"] = {c.key: c.label for c in comps}
        design["comparisons"] = len(comps)
        design["alpha_each"] = design["alpha"] / max(1, len(comps))
    alpha, margin = float(design["alpha_each"]), float(design["margin"])
    rounds_left = int(design["max_rounds"]) - r - 1
    last = rounds_left <= 0 or not can_continue(n, m, used, budget, costs)
    open_ = [c for c in comps if c.key in journal["comparisons"] and not _closed(journal, c.key)]
    needs = {c.key: _need(c) for c in open_}
    growth = float(design.get("growth", GROWTH))
    top = (n, m) if last else final_design(n, m, list(needs.values()), used, budget, costs, rounds_left, growth)
    looks = {}
    for c in open_:
        prev, rounds = _history(journal, c.key)
        f = _fraction(needs[c.key], n, m, top, prev[-1].fraction if prev else 0.0, last)
        bounds = boundaries([p.fraction for p in prev] + [f], alpha, design["spending"])[-1]
        result = look(c.diffs, bounds, margin)
        answer, at = decide([*prev, result])
        looks[c.key] = {**result.as_dict(), "answer": answer, "decided_at": None if at is None else [*rounds, r][at]}
    rnd.update(status="done", spent=used.as_dict(), looks=looks, plan=None)
    # undecided with the alpha left: a look at fraction 1 (the design's information reached) was its last
    still = [k for k, v in looks.items() if v["answer"] == UNDECIDED and v["fraction"] < 1.0]
    n_open = sum(_final_answer(journal, k) == UNDECIDED for k in journal["comparisons"])
    if not journal["comparisons"]:
        _stop(journal, "none", f"no comparison of interest ({what}) has results after round {r}", costs)
    elif n_open == 0:
        _stop(journal, "decided", f"every comparison decided after round {r}", costs)
    elif last:
        why = "max_rounds" if rounds_left <= 0 else "budget"
        _stop(journal, why, f"{n_open} undecided after round {r}: {_why_last(why, design)}", costs)
    elif not still:
        text = f"{n_open} undecided after round {r}: their looks reached the information the budget was foreseen to buy"
        _stop(journal, "information", text, costs)
    else:
        plan = plan_round(n, m, [needs[k] for k in still], used, budget, costs, growth)
        if plan.action == "stop":
            _stop(journal, plan.stop or "budget", f"{len(still)} undecided after round {r}: {plan.why}", costs)
        else:
            rnd["plan"] = {**asdict(plan), "cost": plan.cost.as_dict()}
            journal["rounds"].append(_planned(r + 1, plan.n, plan.m, plan.why))


def new_journal(design: dict, n: int, m: int) -> dict:
    """A journal whose round 0 is planned at design (n, m)."""
    return {"version": VERSION, "design": design, "rounds": [_planned(0, n, m)], "stopped": None}


def _why_last(why: str, design: dict) -> str:
    if why == "max_rounds":
        return f"sweep.max_rounds={design['max_rounds']} reached"
    return "the budget has no room for another round (this look spent the alpha left)"


def _final_answer(journal: dict, key: str) -> str:
    """A comparison's answer at its latest look (undecided before any)."""
    looks = [rnd["looks"][key] for rnd in journal["rounds"] if key in rnd.get("looks", {})]
    return looks[-1]["answer"] if looks else UNDECIDED


def _closed(journal: dict, key: str) -> bool:
    """Whether comparison ``key`` has had its last look: decided, or looked at fraction 1."""
    for rnd in journal["rounds"]:
        lk = rnd.get("looks", {}).get(key)
        if lk and (lk["answer"] != UNDECIDED or lk["fraction"] >= 1.0):
            return True
    return False


def _stop(journal: dict, reason: str, text: str, costs: Costs) -> None:
    """Record why the sweep stops, and the unit costs its fixed-design comparison needs
    (``harness.adaptive_sim.fixed_designs``)."""
    journal["stopped"] = {"reason": reason, "text": text}
    journal["costs"] = asdict(costs)


def save_fixed_designs(cfg: ExperimentConfig, journal: dict, fixed: dict) -> None:
    """Store the fixed designs of the same power beside the rounds (once the sweep stopped)."""
    journal["fixed"] = fixed
    _save(cfg, journal)


# ---------------------------------------------------------------------------------------------
# --dry-run


def describe_next(cfg: ExperimentConfig) -> tuple[str, ExperimentConfig | None]:
    """The adaptive state and the next round's plan, and that round's config (None: nothing to run)."""
    journal = load_journal(cfg)
    changed = _changed(cfg, journal) if journal is not None else []
    if changed:
        return (
            f"[adaptive] the rounds in {journal_path(cfg).parent} were designed with other {', '.join(changed)}: "
            "`ckd run` refuses this config; with --restart it starts the rounds over (trained work is kept)",
            None,
        )
    budget = ", ".join(f"{k} {v:g}" for k, v in _design(cfg)["budget"].items() if v is not None)
    head = f"[adaptive] sweep.until=decided, budget {budget}, at most {cfg.sweep.max_rounds} rounds"
    if journal is None:
        n, m = initial_design(cfg)
        return f"{head}\nround 0 (no round has run yet): {n} trajectories x {m} student(s) each", round_config(
            cfg, n, m
        )
    done = [r for r in journal["rounds"] if r["status"] == "done"]
    used = Compute(**done[-1]["spent"]) if done else Compute()
    hours = "device-hours" if cfg.sweep.budget.device_hours is not None else "nominal device-hours"
    lines = [head, f"rounds done: {len(done)}; spent {_compute_text(used, hours)}"]
    if journal.get("stopped"):
        lines.append(f"stopped: {journal['stopped']['text']}; nothing left to run")
        return "\n".join(lines), None
    nxt = journal["rounds"][-1]
    lines.append(
        f"next: round {nxt['round']}: {nxt['n']} trajectories x {nxt['m']} student(s) each"
        + (f"; {nxt['why']}" if nxt.get("why") else "")
    )
    plan = done[-1].get("plan") if done else None
    if plan:
        lines.append(
            f"  adds {plan['new_trajectories']} trajectories and {plan['new_students']} (trajectory, seed) cells; "
            f"cost {_compute_text(Compute(**plan['cost']), hours)}"
        )
    return "\n".join(lines), round_config(cfg, int(nxt["n"]), int(nxt["m"]))


def _compute_text(c: Compute, hours: str = "device-hours") -> str:
    return f"{c.teacher_epochs:g} teacher-epochs, {c.student_epochs:g} student-epochs, {c.device_hours:.3f} {hours}"
