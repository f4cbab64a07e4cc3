"""Error rates and compute of adaptive sweeps (issue 24), by seeded simulation of the runner's own
round logic (``harness.adaptive_sim.simulate_sweep`` -> ``harness.adaptive.close_round``).

    python benchmarks/bench_adaptive.py [--reps 1000] [--planted-reps 300] [--out FILE.json]

The design is the adaptive paper-claims run's (``benchmarks/paper_claims/mnist1d_adaptive.yaml``):
round 0 = 5 trajectories x 2 students, a budget of 1600 teacher-epochs and 12000 student-epochs,
at most 6 rounds, O'Brien-Fleming-type spending, margin 0.5 pp, the nominal FLOP costs of
cnn1d_small teachers (80 epochs) and 11 mlp_small runs of 30 epochs per student cell. Differences
are in pp; three variance models (trajectory sd, student sd): (1, 1), trajectory-dominated
(1.5, 0.5) and student-dominated (0.3, 2.0). Cells, fixed before any was run:

- type-I: theta = 0 -> share answering better or worse (must be <= alpha = 0.05);
- equivalence error: theta = +margin -> share answering equivalent (must be <= alpha);
- planted: theta = 1.5 and 2.5 pp (model (1, 1)) at alpha 0.0125 (the claims' alpha each), with
  O'Brien-Fleming-type and Pocock-type spending -> power, compute spent against the cheapest fixed
  design (one look, any m) of the same power (an oracle: it knows the effect and the variances),
  and against the fixed design that spends the whole budget (what a user runs without knowing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.adaptive_plan import Budget, Costs
from harness.adaptive_sim import mc_se, simulate_sweep

PP = 0.01  # differences are fractions in the harness: 1 pp = 0.01
COSTS = Costs(80.0, 330.0, 4.9493e-05, 1.5189e-06)  # unit_costs of mnist1d_adaptive.yaml (nominal FLOP hours)
BUDGET = Budget(teacher_epochs=1600, student_epochs=12000)
START, MAX_ROUNDS, MARGIN = (5, 2), 6, 0.5 * PP
BUDGET_HOURS = 1600 * COSTS.hours_per_teacher_epoch + 12000 * COSTS.hours_per_student_epoch  # the whole budget
MODELS = {"equal": (1.0, 1.0), "trajectory-dominated": (1.5, 0.5), "student-dominated": (0.3, 2.0)}


def cell(kind: str, model: str, theta_pp: float, alpha: float, reps: int, seed: int, spending: str = "obf") -> dict:
    sd_b, sd_w = MODELS[model]
    began = time.perf_counter()
    r = simulate_sweep(
        theta_pp * PP,
        sd_b * PP,
        sd_w * PP,
        START,
        BUDGET,
        COSTS,
        alpha=alpha,
        margin=MARGIN,
        reps=reps,
        seed=seed,
        max_rounds=MAX_ROUNDS,
        spending=spending,
    )
    out = {
        "kind": kind,
        "spending": spending,
        "model": model,
        "sd_between_pp": sd_b,
        "sd_within_pp": sd_w,
        "theta_pp": theta_pp,
    }
    out |= {"alpha": alpha, "seed": seed, **r.as_dict(), "seconds": time.perf_counter() - began}
    if kind == "type-I":
        err = r.answers["better"] + r.answers["worse"]
        out |= {"error": err, "mc_se": mc_se(err, reps), "holds": err <= alpha}
    elif kind == "equivalence":
        err = r.answers["equivalent"]
        out |= {"error": err, "mc_se": mc_se(err, reps), "holds": err <= alpha}
    else:
        out["adaptive_over_fixed"] = None if not r.fixed_hours else r.mean_hours / r.fixed_hours
        out["adaptive_over_budget"] = r.mean_hours / BUDGET_HOURS
    print(json.dumps({k: v for k, v in out.items() if k not in ("answers",)}, default=str), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=1000, help="replicates per error-rate cell")
    ap.add_argument("--planted-reps", type=int, default=300, help="replicates per planted-effect cell")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_adaptive.json"))
    args = ap.parse_args()
    cells = []
    for i, model in enumerate(MODELS):
        cells.append(cell("type-I", model, 0.0, 0.05, args.reps, seed=100 + i))
        cells.append(cell("equivalence", model, 0.5, 0.05, args.reps, seed=200 + i))
    for j, spending in enumerate(("obf", "pocock")):
        for i, theta in enumerate((1.5, 2.5)):
            cells.append(cell("planted", "equal", theta, 0.0125, args.planted_reps, 300 + 10 * j + i, spending))
    report = {
        "benchmark": "bench_adaptive",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "design": {"start": START, "max_rounds": MAX_ROUNDS, "margin_pp": 0.5, "budget": BUDGET.__dict__},
        "costs": COSTS.__dict__,
        "cells": cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
