"""Selector evaluation against ground truth: does the scorer's pick distill a good student?

When a trajectory has student results for every saved checkpoint (``every_checkpoint`` in the
sweep), the student test accuracy per checkpoint, averaged over the student seeds that learned
from it, is the ground truth. For every selector in the scores files (paper, ce, kde, binning,
accuracy and any added later) and every such trajectory:

- **pick** and its **rank** among the checkpoints by ground truth (1 = best; ties share a rank);
- **regret** in pp: the oracle's ground truth minus the pick's, where the oracle is the checkpoint
  with the best mean *validation* accuracy of its students (reported on test, so the oracle does not
  win by test-set noise; regret can be negative);
- **Spearman rho** between the selector's score and the ground truth over the checkpoints;
- **hit@1 / hit@3**: the pick's rank is 1 / at most 3.

Averaged over trajectories (the unit of replication: n = trajectories, whatever the students
per checkpoint) with 95% intervals (Student-t for means, Clopper-Pearson for hit rates), beside two
baselines (``last checkpoint``: always the final one, i.e. ``full``; ``oracle (val)``), the ground
truth's **reliability** and the **noise ceiling** (``reliability``), and the **cost** of every row
per trajectory, in student-epochs and seconds: an MI selector trains no student (its seconds: what
its stored estimates cost, ``selector_cost_s``), a proxy selector its proxy students (the scores'
``proxy[selector].cost``), the last checkpoint nothing, and the oracle is the brute force: every
checkpoint distilled fully, i.e. the runs behind the ground truth (a packed run counts its share
of its pack's wall time). ``selector_plot.py`` plots regret against cost.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import defaultdict

from harness.report.board import build_leaderboard
from harness.report.paired import single_checkpoint_rows
from harness.report.stats import mean_interval, proportion_interval, spearman
from harness.report.tables import markdown_table, text_table
from harness.scoring.scores_file import (
    checkpoint_epochs,
    estimates_cost_s,
    picks,
    proxy_entries,
    scoring_timings,
    selector_estimators,
    selector_score_by_epoch,
)
from harness.teacher_choices import choice_of

logger = logging.getLogger(__name__)
MAX_SPLITS = 20  # split-half: all balanced splits up to this many, else this many random ones
BASELINES = ("last checkpoint (full)", "oracle (val)")


def ground_truth(rows: list[dict], reported: str = "final") -> dict[tuple, dict[int, dict]]:
    """``{(dataset, teacher_arch, student_arch, trajectory): {epoch: entry}}`` from every run
    that learned from one checkpoint; an entry has ``test_mean``, ``val_mean``, ``n`` and
    ``pairs`` (per student seed), hyperparameters chosen by validation as on the leaderboard."""
    by_traj: dict[tuple, list[dict]] = defaultdict(list)
    for r in single_checkpoint_rows(rows):
        by_traj[(r.get("dataset"), r.get("teacher_arch"), r.get("student_arch"), r["trajectory"])].append(r)
    out: dict[tuple, dict[int, dict]] = {}
    for key, trows in by_traj.items():
        board = build_leaderboard(trows, reported=reported, reference="-", alpha=0.05)
        out[key] = {choice_of(b["teacher_choice"]).epoch: b for b in board}
        for b in board:
            b["rows"] = [r for r in trows if r["teacher_choice"] == b["teacher_choice"]]
    return out


def _rank(gt: dict[int, float], epoch: int) -> int:
    return 1 + sum(1 for v in gt.values() if v > gt[epoch] + 1e-12)


def _oracle(entries: dict[int, dict]) -> int:
    """The checkpoint whose students have the best mean validation accuracy (earliest on ties)."""
    return max(sorted(entries), key=lambda e: entries[e]["val_mean"])


def split_half(entries: dict[int, dict], seed: int = 0) -> float:
    """Mean Spearman rho between the per-checkpoint accuracies of two halves of the student seeds
    (balanced splits: all of them up to ``MAX_SPLITS``, else that many random ones); NaN with
    fewer than two seeds at every checkpoint."""
    keys = sorted(set.intersection(*(set(b["pairs"]) for b in entries.values())), key=lambda k: tuple(map(str, k)))
    if len(keys) < 2:
        return math.nan
    half = len(keys) // 2
    splits = [a for a in itertools.combinations(keys, half) if len(keys) % 2 or keys[0] in a]  # each split once
    if len(splits) > MAX_SPLITS:
        splits = random.Random(seed).sample(splits, MAX_SPLITS)
    epochs = sorted(entries)
    rhos = []
    for a in splits:
        b = [k for k in keys if k not in a]
        ma = [sum(entries[e]["pairs"][k] for k in a) / len(a) for e in epochs]
        mb = [sum(entries[e]["pairs"][k] for k in b) / len(b) for e in epochs]
        rhos.append(spearman(ma, mb))
    rhos = [r for r in rhos if not math.isnan(r)]
    return sum(rhos) / len(rhos) if rhos else math.nan


def reliability(split_half_rho: float) -> tuple[float, float]:
    """(reliability, noise ceiling) of a ground truth whose halves of student seeds agree at
    ``split_half_rho``: Spearman-Brown steps it up to all seeds, rel = 2r / (1 + r), r clipped at 0
    (halves that disagree carry no reliability); sqrt(rel) bounds the rho of even a perfect selector
    with the noisy ground truth (attenuation: exact for Pearson, close for Spearman; approximate
    for an odd seed count, whose halves differ by one). NaN stays NaN."""
    if math.isnan(split_half_rho):
        return math.nan, math.nan
    r = min(max(split_half_rho, 0.0), 1.0)
    rel = 2 * r / (1 + r)
    return rel, math.sqrt(rel)


# ---------------------------------------------------------------------------------------------
# per trajectory


def selector_cost(scores: dict, selector: str) -> tuple[float | None, float | None]:
    """(student-epochs, seconds) one trajectory's pick cost: a proxy selector's recorded cost, an
    MI selector's scorer seconds (``selector_cost_s``) and no student-epochs."""
    proxy = (proxy_entries(scores).get(selector) or {}).get("cost")
    if isinstance(proxy, dict):
        return float(proxy.get("student_epochs") or 0.0), proxy.get("seconds")
    return 0.0, selector_cost_s(scores, selector)


def selector_cost_s(scores: dict, selector: str) -> float | None:
    """Scorer seconds of one trajectory for a selector: what its estimates cost as stored with them
    (``scores_file.estimates_cost_s``), unchanged by later re-scores that reuse them; for a file
    without those (scored before they were recorded) the latest run's seconds of its estimators,
    feature pass and loading (leaving out what it reused), or the whole run's without the split."""
    ests = selector_estimators(scores, selector)
    stored = estimates_cost_s(scores, ests or [])
    if stored is not None:
        return stored
    t = scoring_timings(scores)
    logger.info(
        f"[report] cost of {selector} on {scores.get('trajectory')}: no per-checkpoint costs stored; using the "
        "latest scoring run's timings (reused estimates count 0 s); re-score to record them"
    )
    per = t.get("estimators_s")
    if ests and isinstance(per, dict) and all(e in per for e in ests):
        return float(sum(per[e] for e in ests) + (t.get("features_s") or 0.0) + (t.get("load_s") or 0.0))
    return None if t.get("total_s") is None else float(t["total_s"])


def _judge(gt: dict[int, float], oracle: int, pick: int, score: dict[int, float] | None) -> dict:
    rank = _rank(gt, pick)
    epochs = sorted(gt)
    rho = (
        spearman([score[e] for e in epochs], [gt[e] for e in epochs])
        if score and set(epochs) <= set(score)
        else math.nan
    )
    return {
        "pick": pick,
        "rank": rank,
        "regret": gt[oracle] - gt[pick],
        "rho": rho,
        "hit1": rank <= 1,
        "hit3": rank <= 3,
    }


def _brute_force(entries: dict[int, dict]) -> tuple[int, float]:
    """(student-epochs, wall seconds) of the runs behind the ground truth of one trajectory; a
    packed run's row holds its whole pack's wall time, so it counts 1/pack_size of it."""
    runs = [r for b in entries.values() for r in b["rows"]]
    wall = sum(float(r.get("wall_time_s") or 0.0) / max(int(r.get("pack_size") or 1), 1) for r in runs)
    return sum(int(r.get("epochs") or 0) for r in runs), wall


def evaluate_trajectory(entries: dict[int, dict], scores: dict) -> dict:
    """One trajectory: every selector's pick judged against the ground truth, plus baselines."""
    gt = {e: b["test_mean"] for e, b in entries.items()}
    oracle = _oracle(entries)
    judged: dict[str, dict] = {}
    for sel, picked in sorted(picks(scores).items()):
        if picked.epoch is None or picked.epoch not in gt:
            continue
        epochs_cost, seconds = selector_cost(scores, sel)
        judged[sel] = {
            **_judge(gt, oracle, picked.epoch, selector_score_by_epoch(scores, sel)),
            "cost_s": seconds,
            "cost_latest_run": sel not in proxy_entries(scores)
            and estimates_cost_s(scores, selector_estimators(scores, sel) or []) is None,
            "student_epochs": epochs_cost,
            "degenerate": picked.degenerate,
            "confidence": picked.confidence,
            "unstable": picked.unstable,
        }
    student_epochs, wall = _brute_force(entries)
    judged[BASELINES[0]] = {**_judge(gt, oracle, max(gt), None), "cost_s": 0.0, "student_epochs": 0.0}
    judged[BASELINES[1]] = {**_judge(gt, oracle, oracle, None), "cost_s": wall, "student_epochs": float(student_epochs)}
    rho = split_half(entries)
    rel, ceiling = reliability(rho)
    students = [len(b["pairs"]) for b in entries.values()]
    return {
        "selectors": judged,
        "split_half_rho": rho,
        "reliability": rel,
        "noise_ceiling": ceiling,
        "oracle": oracle,
        "epochs": sorted(gt),
        "brute_force_student_epochs": student_epochs,
        "brute_force_wall_s": wall,
        "seeds": min(b["n"] for b in entries.values()),
        "students": (min(students), max(students)),
    }


def _complete(key: tuple, entries: dict[int, dict], scores: dict | None) -> str | None:
    """Why a trajectory cannot be evaluated (None when it can)."""
    if scores is None:
        return f"{key[3]}: no scores (run `ckd score`)"
    saved = set(checkpoint_epochs(scores))
    missing = sorted(saved - set(entries))
    if not saved or missing:
        return f"{key[3]} -> {key[2]}: no student results for epoch(s) {missing or 'any'} (sweep `every_checkpoint`)"
    return None


# ---------------------------------------------------------------------------------------------
# over trajectories


def _clip_rho(iv: tuple[float, float, float], low: float = -1.0) -> tuple[float, float, float]:
    """A correlation's t-interval clipped to [low, 1] (NaN stays NaN)."""
    return iv[0], max(low, iv[1]) if iv[1] == iv[1] else iv[1], min(1.0, iv[2]) if iv[2] == iv[2] else iv[2]


def _summary(selector: str, judged: list[dict], per_traj: list[dict]) -> dict:
    """One selector over the trajectories of one (dataset, teacher, student)."""
    n = len(judged)
    regret = mean_interval([j["regret"] for j in judged])
    rho = _clip_rho(mean_interval([j["rho"] for j in judged]))
    costs = [j["cost_s"] for j in judged if j.get("cost_s") is not None]
    epochs = [j["student_epochs"] for j in judged if j.get("student_epochs") is not None]
    conf = [j["confidence"] for j in judged if j.get("confidence") is not None]
    return {
        "selector": selector,
        "trajectories": n,
        "picks": "/".join(str(j["pick"]) for j in judged),
        "ranks": "/".join(str(j["rank"]) for j in judged),
        "mean_rank": sum(j["rank"] for j in judged) / n,
        "regret_pp": 100 * regret[0],
        "regret_ci_low": 100 * regret[1],
        "regret_ci_high": 100 * regret[2],
        "rho": rho[0],
        "rho_ci_low": rho[1],
        "rho_ci_high": rho[2],
        "rho_defined": sum(1 for j in judged if not math.isnan(j["rho"])),
        "hit1": proportion_interval(sum(j["hit1"] for j in judged), n),
        "hit3": proportion_interval(sum(j["hit3"] for j in judged), n),
        "cost_s": sum(costs) / len(costs) if costs else None,
        "student_epochs": sum(epochs) / len(epochs) if epochs else None,
        "brute_force_student_epochs": sum(t["brute_force_student_epochs"] for t in per_traj) / len(per_traj),
        "brute_force_wall_s": sum(t["brute_force_wall_s"] for t in per_traj) / len(per_traj),
        "degenerate": sum(1 for j in judged if j.get("degenerate")),
        "unstable": None
        if not any(j.get("unstable") is not None for j in judged)
        else sum(1 for j in judged if j.get("unstable")),
        "confidence": sum(conf) / len(conf) if conf else None,
        "cost_latest_run": sum(1 for j in judged if j.get("cost_latest_run")),
    }


def _group(per_traj: dict[tuple, dict]) -> dict:
    """Summaries of every selector for one (dataset, teacher, student) group of trajectories."""
    trajs = list(per_traj.values())
    names = sorted({s for t in trajs for s in t["selectors"] if s not in BASELINES}) + list(BASELINES)
    rows = []
    for sel in names:
        judged = [t["selectors"][sel] for t in trajs if sel in t["selectors"]]
        if judged:
            rows.append(_summary(sel, judged, trajs))
    split_half = _clip_rho(mean_interval([t["split_half_rho"] for t in trajs]))
    stepped = [reliability(r) for r in split_half]  # of the mean and its bounds: a monotone map
    return {
        "rows": rows,
        "split_half_rho": split_half,
        "reliability": tuple(rel for rel, _ in stepped),
        "noise_ceiling": tuple(ceiling for _, ceiling in stepped),
        "trajectories": sorted(k[3] for k in per_traj),
        "seeds_per_checkpoint": min(t["seeds"] for t in trajs),
        "students_per_checkpoint": (min(t["students"][0] for t in trajs), max(t["students"][1] for t in trajs)),
        "epochs": trajs[0]["epochs"],
    }


def evaluate_selectors(rows: list[dict], scores: dict[str, dict], reported: str = "final") -> dict:
    """``{"groups": {(dataset, teacher, student): group}, "skipped": [why]}`` (see module doc);
    a group has ``rows`` (one per selector and baseline), ``split_half_rho``, ``reliability`` and
    ``noise_ceiling`` (each mean, low, high over trajectories), ``trajectories``,
    ``seeds_per_checkpoint``, ``students_per_checkpoint`` (fewest, most) and ``epochs``."""
    per_group: dict[tuple, dict[tuple, dict]] = defaultdict(dict)
    skipped = []
    for key, entries in sorted(ground_truth(rows, reported).items(), key=lambda kv: tuple(map(str, kv[0]))):
        why = _complete(key, entries, scores.get(key[3]))
        if why:
            skipped.append(why)
            continue
        per_group[key[:3]][key] = evaluate_trajectory(entries, scores[key[3]])
    return {"groups": {k: _group(v) for k, v in per_group.items()}, "skipped": skipped}


# ---------------------------------------------------------------------------------------------
# rendering


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _ci(m: float, lo: float, hi: float, fmt: str = "{:+.2f}") -> str:
    return _f(m, fmt) + ("" if math.isnan(lo) else f" [{_f(lo, fmt)}, {_f(hi, fmt)}]")


def _hit(h: tuple[float, float, float]) -> str:
    return _ci(h[0], h[1], h[2], "{:.2f}")


def _notes(r: dict) -> str:
    notes = []
    if r["degenerate"]:
        notes.append(f"degenerate in {r['degenerate']}")
    if r["unstable"]:
        notes.append(f"unstable in {r['unstable']}")
    if r["confidence"] is not None:
        notes.append(f"confidence {r['confidence']:.2f}")
    if r.get("cost_latest_run"):
        notes.append(f"cost: latest scoring run only in {r['cost_latest_run']}")
    return "; ".join(notes) or "-"


SELECTOR_COLUMNS = [  # (header, cell, numeric)
    ("selector", lambda r: r["selector"], False),
    ("picks", lambda r: r["picks"], False),
    ("ranks", lambda r: r["ranks"], False),
    ("mean rank", lambda r: f"{r['mean_rank']:.1f}", True),
    ("regret pp [95% CI]", lambda r: _ci(r["regret_pp"], r["regret_ci_low"], r["regret_ci_high"]), True),
    ("Spearman rho [95% CI]", lambda r: _ci(r["rho"], r["rho_ci_low"], r["rho_ci_high"]), True),
    ("hit@1 [95% CI]", lambda r: _hit(r["hit1"]), True),
    ("hit@3 [95% CI]", lambda r: _hit(r["hit3"]), True),
    ("cost student-epochs/traj", lambda r: _f(r.get("student_epochs"), "{:.0f}"), True),
    ("cost s/traj", lambda r: _f(r["cost_s"], "{:.1f}"), True),
    ("cost vs brute force (s)", lambda r: _share(r.get("cost_s"), r["brute_force_wall_s"]), True),
    ("notes", _notes, False),
]


def _students(g: dict) -> str:
    """Students per checkpoint per trajectory: ``M``, or ``fewest-most`` when they differ."""
    lo, hi = g["students_per_checkpoint"]
    return str(lo) if lo == hi else f"{lo}-{hi}"


def group_heading(key: tuple, g: dict) -> str:
    """``dataset: teacher -> student; n = K trajectories, M students per checkpoint per trajectory``,
    the checkpoints, and the ground truth's split-half rho, reliability and noise ceiling."""
    e, n, m = g["epochs"], len(g["trajectories"]), _students(g)
    rho, rel, c = g["split_half_rho"], g["reliability"], g["noise_ceiling"]
    return (
        f"{key[0]}: {key[1]} -> {key[2]}; n = {n} trajector{'y' if n == 1 else 'ies'}, "
        f"{m} student{'' if m == '1' else 's'} per checkpoint per trajectory; "
        f"checkpoints {e[0]}..{e[-1]} ({len(e)}); ground truth split-half rho {_ci(*rho)}, "
        f"reliability {_ci(*rel, '{:.2f}')}, noise ceiling {_ci(*c, '{:.2f}')}"
    )


SELECTOR_NOTE = (
    "Ground truth: student test accuracy per teacher checkpoint, mean over the student seeds that learned from it. "
    "rank: the pick's rank by ground truth (1 = best of the checkpoints). regret: ground truth of the oracle "
    "(the checkpoint with the best mean student validation accuracy) minus the pick's, in pp. rho: Spearman "
    "correlation of the selector's score with the ground truth over one trajectory's checkpoints (n/a when the "
    "score is constant). n = trajectories: students that share a trajectory are not independent, so "
    "means over trajectories with 95% Student-t intervals; hit rates with Clopper-Pearson intervals. Ground "
    "truth split-half rho: Spearman rho between the checkpoints' accuracies of two halves of the student seeds; "
    "reliability: the Spearman-Brown step-up of the mean split-half rho (and of its interval bounds) to all "
    "seeds, 2r/(1+r) (r clipped at 0); noise ceiling: "
    "sqrt(reliability), the highest rho even a perfect selector can reach against this noisy ground truth. "
    "Cost per trajectory in student-epochs and seconds: an MI selector trains no student (seconds: what the "
    "scorer's feature pass and its estimators cost on every checkpoint, stored with the estimates, so a later "
    "re-score that reuses them leaves it unchanged); a proxy selector, its proxy students (successive halving); "
    "the oracle (val) is the brute force (every checkpoint's students, the ground truth's runs). Baselines: the "
    "last checkpoint (= full) and the validation oracle."
)


def _share(seconds: float | None, brute_force_s: float) -> str:
    """A cost as a percentage of the brute force's seconds."""
    if seconds is None or not brute_force_s:
        return "n/a"
    return f"{100 * seconds / brute_force_s:.1f}%"


def selector_tables(result: dict) -> list[tuple[str, list[str], list[list[str]], set[str]]]:
    """(heading, headers, rows, numeric headers) per group."""
    headers, numeric = [h for h, _, _ in SELECTOR_COLUMNS], {h for h, _, num in SELECTOR_COLUMNS if num}
    return [
        (group_heading(key, g), headers, [[f(r) for _, f, _ in SELECTOR_COLUMNS] for r in g["rows"]], numeric)
        for key, g in result["groups"].items()
    ]


def render_selectors(result: dict, fmt: str = "markdown") -> str:
    """The selector evaluation as ``text``, ``markdown`` or ``csv``."""
    if fmt == "csv":
        return selectors_csv(result)
    parts = ["# Selector evaluation", "", SELECTOR_NOTE, ""] if fmt == "markdown" else []
    for heading, headers, rows, numeric in selector_tables(result):
        table = markdown_table if fmt == "markdown" else text_table
        parts += [f"## {heading}" if fmt == "markdown" else heading, "", table(headers, rows, numeric.__contains__), ""]
    if not result["groups"]:
        parts.append(
            "No trajectory has student results for every saved checkpoint: "
            "sweep `every_checkpoint` to evaluate the selectors."
        )
    parts += [f"Left out: {why}" for why in result["skipped"]]
    return "\n".join(parts).rstrip() + "\n"


CSV_KEYS = (
    "selector trajectories picks ranks mean_rank regret_pp regret_ci_low regret_ci_high rho rho_ci_low rho_ci_high "
    "rho_defined cost_s student_epochs brute_force_student_epochs brute_force_wall_s degenerate unstable confidence "
    "cost_latest_run"
).split()
GROUP_CSV_KEYS = ("split_half_rho", "ground_truth_reliability", "noise_ceiling")


def selectors_csv(result: dict) -> str:
    """One line per (group, row): the row's ``CSV_KEYS``, hit rates, students per checkpoint and
    the group's split-half rho, reliability and noise ceiling (each with its interval)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ivs = [f"{k}{s}" for k in ("hit1", "hit3", *GROUP_CSV_KEYS) for s in ("", "_ci_low", "_ci_high")]
    w.writerow(["dataset", "teacher_arch", "student_arch", *CSV_KEYS, "students_per_checkpoint", *ivs])
    for key, g in result["groups"].items():
        students, group = _students(g), (*g["split_half_rho"], *g["reliability"], *g["noise_ceiling"])
        for r in g["rows"]:
            cells = [
                ("n/a" if r[k] is None or r[k] == "" or (isinstance(r[k], float) and math.isnan(r[k])) else r[k])
                for k in CSV_KEYS
            ]
            w.writerow([*key, *cells, students, *[f"{x:.4g}" for x in (*r["hit1"], *r["hit3"], *group)]])
    return buf.getvalue()
