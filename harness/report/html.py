"""The self-contained HTML report (``leaderboard.html``): one file, no network assets.

Title with the experiment, the date and the config hash; the leaderboard with its policy note, the
paper's claims, the selector evaluation (numbers right-aligned) and the plots embedded as
``data:image/png;base64`` images. Styles are inline; there is no script and no external link, so
the page renders the same offline, from an e-mail attachment or a W&B artifact.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

from harness.report.claims import EMPTY, claim_table, claims_note
from harness.report.leaderboard import leaderboard_section
from harness.report.selectors import SELECTOR_NOTE, selector_tables
from harness.report.tables import escape, html_table, page


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


def _plots_section(plots: list[Path]) -> list[str]:
    out = ["<h2>Plots</h2>"]
    for p in plots:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        out.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(Path(p).name)}">'
            f"<figcaption>{escape(Path(p).name)}</figcaption></figure>"
        )
    if not plots:
        out.append('<p class="note">No plots (their data is missing; see the log of <code>ckd plot</code>).</p>')
    return out


def report_page(
    board: list[dict],
    claims: list[dict] | None = None,
    selectors: dict | None = None,
    plots: list[Path] = (),
    title: str = "Leaderboard",
    experiment: str | None = None,
    config_hash: str | None = None,
) -> str:
    """The whole page; sections whose input is None are left out."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    heading = f"{title}: {experiment}" if experiment else title
    meta = f"generated {date}" + (f" · config hash {config_hash}" if config_hash else "") + " · ckd-harness"
    body = leaderboard_section(board)
    if claims is not None:
        body += _claims_section(claims)
    if selectors is not None:
        body += _selectors_section(selectors)
    if plots:
        body += _plots_section(list(plots))
    return page(heading, f"{heading} ({date})", meta, body)
