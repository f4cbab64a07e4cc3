"""The self-contained HTML report (``leaderboard.html``): one file, no network assets.

Title with the experiment, the date and the config hash; a contents list; the leaderboard with its
policy note, the paper's claims, the selector evaluation (numbers right-aligned, answers coloured,
every table in its own horizontally scrollable box), the plots embedded as
``data:image/png;base64`` images with captions in words, and the run: the harness commit, the
package versions, where the student runs trained, their device time and the resolved config.
Styles are inline; there is no script and no external link (only ``#`` links within the page),
so the page renders the same offline, from an e-mail attachment or a W&B artifact.
"""

from __future__ import annotations

import base64
import platform
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from harness.objects import ObjectPath, location
from harness.report.claims import EMPTY, claim_table, claims_note
from harness.report.leaderboard import leaderboard_section
from harness.report.selectors import SELECTOR_NOTE, selector_tables
from harness.report.tables import escape, html_table, page

PACKAGES = ("ckd-harness", "torch", "numpy", "scipy")  # the versions the Run section names (and Python)
PLOT_CAPTIONS = {  # file-name prefix -> caption in words ({ref}: the reference choice)
    "forest": "Paired difference to {ref}, per teacher choice",
    "acc_vs_teacher_epoch": "Student test accuracy against the teacher checkpoint's epoch",
    "ensemble_comparison": "Student accuracy with no teacher, single checkpoints, snapshot and full ensembles",
    "information_plane": "Information plane: I(X;F) against I(Y;F) of every scored checkpoint",
    "selector_cost": "Selector cost: mean regret against the cost of choosing",
    "adaptive_intervals": (
        "Adaptive sweep: each comparison's difference and repeated confidence interval (at the round's nominal "
        "level) per round against the compute spent, the ±margin band and the fixed design's compute"
    ),
}
ENV_FIELDS = ("device_name", "device", "threads", "precision", "torch", "cuda", "commit")


def _claims_section(claims: list[dict]) -> list[str]:
    if not claims:
        return ["<h2>The paper's claims</h2>", f'<p class="note">{escape(EMPTY)}</p>']
    headers, rows, numeric = claim_table(claims)
    return [
        "<h2>The paper's claims</h2>",
        f'<p class="note">{escape(claims_note(claims))}</p>',
        html_table("claims", headers, rows, numeric.__contains__),
    ]


def _selectors_section(result: dict) -> list[str]:
    out = ["<h2>Selector evaluation</h2>", f'<p class="note">{escape(SELECTOR_NOTE)}</p>']
    tables = selector_tables(result)
    for i, (heading, headers, rows, numeric) in enumerate(tables):
        out += [f"<h3>{escape(heading)}</h3>", html_table(f"selectors-{i}", headers, rows, numeric.__contains__)]
    if not tables:
        out.append(
            '<p class="note">No trajectory has student results for every saved checkpoint: sweep '
            "<code>every_checkpoint</code> to evaluate the selectors.</p>"
        )
    out += [f'<p class="note">Left out: {escape(why)}</p>' for why in result.get("skipped", [])]
    return out


def plot_caption(path: Path | ObjectPath, reference: str = "full") -> str:
    """The plot's caption in words, its file name in parentheses (``Paired difference to full, per
    teacher choice (forest-mnist1d-mlp_small.png)``); an unknown plot is named by its file alone."""
    prefix = next((k for k in sorted(PLOT_CAPTIONS, key=len, reverse=True) if path.stem.startswith(k)), None)
    words = PLOT_CAPTIONS[prefix].format(ref=reference) if prefix else ""
    return f"{words} ({path.name})" if words else path.name


def _plots_section(plots: list[Path | ObjectPath], reference: str) -> list[str]:
    """Each plot inlined as a base64 PNG (read from its file or object) with its caption."""
    out = ["<h2>Plots</h2>"]
    for p in map(location, plots):
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        caption = escape(plot_caption(p, reference))
        out.append(
            f'<figure id="plot-{escape(p.stem)}"><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return out


def versions() -> dict[str, str]:
    """Python's and the packages' versions (``importlib.metadata``; "not installed" when absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def harness_commit() -> str:
    """The harness source's git commit, short, ``+dirty`` when ``harness/`` differs from it."""
    from harness.fingerprint import source_commit  # here: fingerprint imports torch

    commit, dirty = source_commit()
    return ("unknown" if commit == "unknown" else commit[:10]) + ("+dirty" if dirty else "")


def _environments(rows: list[dict]) -> list[str]:
    """Where the student runs trained: one line per distinct fingerprint (the rows' ``environment``)."""
    counts = Counter(
        tuple(str((r.get("environment") or {}).get(k, "-")) for k in ENV_FIELDS) for r in rows if r.get("environment")
    )
    if not counts:
        return ['<p class="note">The result rows carry no environment fingerprint.</p>']
    table = [[*(v[:10] if k == "commit" else v for k, v in zip(ENV_FIELDS, key)), str(n)] for key, n in counts.items()]
    headers = [*ENV_FIELDS, "runs"]
    return [
        "<h3>Where the student runs trained</h3>",
        html_table("environments", headers, table, {"runs"}.__contains__),
    ]


STAGE_TIMES = "stage_times.json"


def _device_time(rows: list[dict]) -> str:
    """The student runs' training time: each pack's wall time once (a row carries its pack's)."""
    seconds = sum(float(r.get("wall_time_s") or 0.0) / max(int(r.get("pack_size") or 1), 1) for r in rows)
    return f"{seconds / 3600:.2f} device-hours ({seconds / 60:.1f} min) over {len(rows)} student runs"


def stage_times(cfg: Any) -> str:
    """The wall time of the last ``ckd run`` per stage (``logs/stage_times.json``, written by
    ``harness.pipeline.run_pipeline`` before its report), or why there is none."""
    import json

    from harness.experiment import open_store

    path = open_store(cfg).root / "logs" / STAGE_TIMES
    try:
        data = json.loads(path.read_text())
        parts = ", ".join(f"{k} {float(v):.1f} s" for k, v in data["stages"])  # in stage order
        return f"{parts}; total {float(data['total_s']):.1f} s (ckd run finished {data['finished']})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "no ckd run recorded its stage times here (the stage verbs run one stage each)"


def run_section(cfg: Any, rows: list[dict], generated: str) -> list[str]:
    """The run behind the page: commit, versions, wall time per stage, student device time,
    where the runs trained and the resolved config."""
    from harness.config import to_dict

    facts = [
        ["generated", generated],
        ["harness commit", harness_commit()],
        *([k, v] for k, v in versions().items()),
        ["wall time", stage_times(cfg)],
        ["student training", _device_time(rows)],
    ]
    config = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    return [
        "<h2>Run</h2>",
        html_table("run", ["what", "value"], facts, lambda _: False),
        *_environments(rows),
        f"<details><summary>Resolved config (YAML)</summary><pre>{escape(config)}</pre></details>",
    ]


def _section(anchor: str, parts: list[str]) -> list[str]:
    return [f'<section id="{anchor}">', *parts, "</section>"]


def _contents(entries: list[tuple[str, str, list[tuple[str, str]]]]) -> list[str]:
    """The contents list: (anchor, title, [(anchor, title) of its parts]) as nested in-page links."""
    link = lambda a, t: f'<a href="#{escape(a)}">{escape(t)}</a>'  # noqa: E731
    out = ['<nav class="contents"><strong>Contents</strong>', "<ul>"]
    for anchor, title, parts in entries:
        sub = "<ul>" + "".join(f"<li>{link(a, t)}</li>" for a, t in parts) + "</ul>" if parts else ""
        out.append(f"<li>{link(anchor, title)}{sub}</li>")
    return out + ["</ul>", "</nav>"]


def report_page(
    board: list[dict],
    claims: list[dict] | None = None,
    selectors: dict | None = None,
    plots: list[Path | ObjectPath] = (),
    title: str = "Leaderboard",
    experiment: str | None = None,
    config_hash: str | None = None,
    cfg: Any = None,
    rows: list[dict] = (),
    not_trained: list[dict] = (),
    adaptive: str | None = None,
) -> str:
    """The whole page; sections whose input is None are left out (the Run section without ``cfg``;
    the runs that did not train when every run trained; ``adaptive``: the rounds of an adaptive
    sweep as an HTML fragment)."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    heading = f"{title}: {experiment}" if experiment else title
    meta = f"generated {date}" + (f" · config hash {config_hash}" if config_hash else "") + " · ckd-harness"
    reference = board[0].get("reference", "full") if board else "full"
    sections = [("s-leaderboard", "Leaderboard", leaderboard_section(board))]
    if not_trained:
        from harness.report.not_trained import html_section

        sections.append(("s-not-trained", "Runs that did not train", html_section(list(not_trained))))
    if adaptive:
        sections.append(("s-adaptive", "Adaptive sweep: rounds and answers", [adaptive]))
    if claims is not None:
        sections.append(("s-claims", "The paper's claims", _claims_section(claims)))
    if selectors is not None:
        sections.append(("s-selectors", "Selector evaluation", _selectors_section(selectors)))
    if plots:
        sections.append(("s-plots", "Plots", _plots_section(list(plots), reference)))
    if cfg is not None:
        sections.append(("s-run", "Run: commit, versions, config", run_section(cfg, list(rows), date)))
    figures = [(f"plot-{p.stem}", plot_caption(p, reference)) for p in map(location, plots)]
    entries = [(anchor, name, figures if anchor == "s-plots" else []) for anchor, name, _ in sections]
    body = _contents(entries) + [line for anchor, _, part in sections for line in _section(anchor, part)]
    return page(heading, f"{heading} ({date})", meta, body)
