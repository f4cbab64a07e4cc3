"""Seeded simulations of a whole adaptive sweep under the hierarchical noise model.

``simulate_sweep`` runs the runner's own round logic (``harness.adaptive.close_round``: the
information fractions from the estimated variances, the group-sequential looks, the planner, the
budget) on simulated differences instead of trained students: the difference of student ``j``
of trajectory ``t`` is ``theta + b_t + e_tj`` with ``b_t ~ N(0, sd_between^2)`` and
``e_tj ~ N(0, sd_within^2)``, drawn once per replicate so rounds are nested. It reports how
often each answer came out, the compute spent, and the cheapest fixed design (one look, the same
alpha, any m) with the same power: what ``tests/test_adaptive_sim.py`` and
``benchmarks/bench_adaptive.py`` check and measure.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from harness.adaptive import close_round, new_journal
from harness.adaptive_plan import GROWTH, Budget, Compute, Costs, round_cost
from harness.adaptive_rounds import Comparison
from harness.report.sequential import fixed_trajectories, right_answers
from harness.report.stats import BETTER, EQUIVALENT, UNDECIDED, WORSE


@dataclass(frozen=True)
class SweepSim:
    reps: int
    answers: dict[str, float]  # share of replicates ending better / worse / equivalent / undecided
    right: float  # share deciding a true answer (``right_answers``): the power
    mean_hours: float  # compute spent, in the costs' hours
    mean_trajectories: float
    mean_students: float  # students per trajectory at the end
    mean_rounds: float
    fixed_hours: float | None  # the cheapest fixed design with power `right` (None: none within reach)
    fixed_design: tuple[int, int] | None  # its (trajectories, students each)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _one_sweep(
    rng: np.random.Generator,
    theta: float,
    sds: tuple[float, float],
    start: tuple[int, int],
    budget: Budget,
    costs: Costs,
    design: dict,
    caps: tuple[int, int],
) -> tuple[str, Compute, int, int, int]:
    """One replicate: (answer, compute, n, m, rounds)."""
    b = rng.normal(0.0, sds[0], caps[0])
    e = rng.normal(0.0, sds[1], caps)
    journal = new_journal(dict(design), *start)
    used, prev = Compute(), (0, 0)
    while not journal["stopped"]:
        n, m = int(journal["rounds"][-1]["n"]), int(journal["rounds"][-1]["m"])
        if n > caps[0] or m > caps[1]:
            raise ValueError(f"the simulation's caps {caps} are below the design ({n}, {m}): raise them")
        used = used + round_cost(*prev, n, m, costs)
        diffs = {t: list(theta + b[t] + e[t, :m]) for t in range(n)}
        close_round(journal, [Comparison("c", "c", diffs)], used, costs, budget)
        prev = (n, m)
    answers = [rnd["looks"]["c"]["answer"] for rnd in journal["rounds"] if "c" in rnd.get("looks", {})]
    return (answers[-1] if answers else UNDECIDED), used, prev[0], prev[1], len(journal["rounds"])


def cheapest_fixed(
    theta: float, sds: tuple[float, float], power: float, costs: Costs, margin: float, alpha: float, most_m: int = 16
) -> tuple[float, tuple[int, int]] | None:
    """The cheapest one-look design (n trajectories x m students, m <= most_m) whose test at
    ``alpha`` decides ``theta`` with probability ``power``: (hours, (n, m))."""
    best = None
    for m in range(1, most_m + 1):
        n = fixed_trajectories(theta, sds[0], sds[1], m, margin, alpha, power=min(max(power, 0.05), 0.999))
        if n is not None:
            hours = round_cost(0, 0, n, m, costs).device_hours
            if best is None or hours < best[0]:
                best = (hours, (n, m))
    return best


def simulate_sweep(
    theta: float,
    sd_between: float,
    sd_within: float,
    start: tuple[int, int],
    budget: Budget,
    costs: Costs,
    alpha: float = 0.05,
    margin: float = 0.005,
    reps: int = 200,
    seed: int = 0,
    max_rounds: int = 10,
    spending: str = "obf",
    caps: tuple[int, int] = (400, 64),
    growth: float = GROWTH,
) -> SweepSim:
    """``reps`` seeded adaptive sweeps of one comparison with true difference ``theta``."""
    design = {
        "alpha": alpha,
        "margin": margin,
        "spending": spending,
        "budget": {},
        "max_rounds": max_rounds,
        "growth": growth,
    }
    rng = np.random.default_rng(seed)
    out = [_one_sweep(rng, theta, (sd_between, sd_within), start, budget, costs, design, caps) for _ in range(reps)]
    answers = [o[0] for o in out]
    shares = {a: answers.count(a) / reps for a in (BETTER, WORSE, EQUIVALENT, UNDECIDED)}
    right = sum(shares[a] for a in right_answers(theta, margin))
    fixed = cheapest_fixed(theta, (sd_between, sd_within), right, costs, margin, alpha) if right > 0 else None
    return SweepSim(
        reps=reps,
        answers=shares,
        right=right,
        mean_hours=float(np.mean([o[1].device_hours for o in out])),
        mean_trajectories=float(np.mean([o[2] for o in out])),
        mean_students=float(np.mean([o[3] for o in out])),
        mean_rounds=float(np.mean([o[4] for o in out])),
        fixed_hours=None if fixed is None else fixed[0],
        fixed_design=None if fixed is None else fixed[1],
    )


FIXED_REPS = 60  # simulated sweeps per comparison behind the report's "fixed design of the same power"


def fixed_designs(journal: dict, reps: int = FIXED_REPS) -> dict:
    """Per comparison of a stopped sweep: the power and compute of this adaptive design at the
    last look's difference and variance estimates (``reps`` seeded simulated sweeps from the same
    round 0, budget, costs and design), and the cheapest fixed design (one look, the same alpha)
    with that power; the report sets the compute actually spent against it."""
    design, costs, first = journal["design"], Costs(**journal["costs"]), journal["rounds"][0]
    budget = Budget(**{k: v for k, v in design["budget"].items() if v is not None})
    out = {}
    for key in journal.get("comparisons", {}):
        looks = [rnd["looks"][key] for rnd in journal["rounds"] if key in rnd.get("looks", {})]
        if not looks or looks[-1]["sd_between"] is None or math.isnan(looks[-1]["diff_mean"]):
            continue
        lk = looks[-1]
        sds = (float(lk["sd_between"]), float(lk["sd_within"] or 0.0))
        sim = simulate_sweep(
            float(lk["diff_mean"]), *sds, (int(first["n"]), int(first["m"])), budget, costs,
            alpha=float(design["alpha_each"]), margin=float(design["margin"]), reps=reps,
            seed=zlib.crc32(key.encode()), max_rounds=int(design["max_rounds"]),
            spending=str(design["spending"]), growth=float(design.get("growth", GROWTH)),
        )  # fmt: skip
        best = cheapest_fixed(
            float(lk["diff_mean"]), sds, sim.right, costs, float(design["margin"]), design["alpha_each"]
        )
        out[key] = {
            "power": sim.right,
            "simulated_compute": {"device_hours": sim.mean_hours},
            "trajectories": None if best is None else best[1][0],
            "m": None if best is None else best[1][1],
            "compute": None if best is None else round_cost(0, 0, *best[1], costs).as_dict(),
            "note": (
                f"the cheapest fixed design (one look, same alpha) with this design's power {sim.right:.2f} at the "
                f"observed difference and variances ({reps} simulated sweeps)"
            ),
        }
    return out


def mc_se(p: float, reps: int) -> float:
    """Monte Carlo standard error of a share ``p`` from ``reps`` replicates."""
    return math.sqrt(max(p * (1 - p), 1e-12) / reps)
