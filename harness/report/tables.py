"""Table renderers shared by the report's parts (leaderboard, claims, selectors, HTML page):
fixed-width text, Markdown and HTML tables with numeric columns right-aligned, and the page
skeleton of the self-contained HTML report."""

from __future__ import annotations

import html
import textwrap
from collections.abc import Callable


def wrap(text: str, width: int = 100) -> str:
    return "\n".join(textwrap.wrap(text, width))


def text_table(headers: list[str], rows: list[list[str]], numeric: Callable[[str], bool]) -> str:
    """A fixed-width table, numeric columns right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if numeric(h) else c.ljust(w) for c, w, h in zip(cells, widths, headers)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def markdown_table(headers: list[str], rows: list[list[str]], numeric: Callable[[str], bool]) -> str:
    """A Markdown table, numeric columns right-aligned."""
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = [
        "| " + " | ".join(esc(h) for h in headers) + " |",
        "|" + "|".join("---:" if numeric(h) else "---" for h in headers) + "|",
    ]
    return "\n".join(out + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; overflow-wrap: anywhere; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; }
p.meta { color: #555; } p.note { max-width: 70em; font-size: 0.9em; color: #333; }
nav.contents { font-size: 0.9em; } nav.contents ul { margin: 0.3em 0; padding-left: 1.4em; }
div.scroll { overflow: auto; width: fit-content; max-width: 100%; max-height: 85vh; margin: 0.5em 0 1em; }
div.scroll { border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; overflow-wrap: normal; }
th { background: #f2f2f2; position: sticky; top: 0; z-index: 1; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.reference td { background: #f7f7ff; }
td.answer-better { background: #dff3df; color: #14521a; }
td.answer-worse { background: #fbe0de; color: #8a1c12; }
td.answer-equivalent { background: #e0ecfb; color: #163f78; }
td.answer-undecided { background: #ececec; color: #444; }
td.answer-same { color: #555; font-style: italic; }
#leaderboard td[class*="answer-"] { white-space: nowrap; }
details pre { overflow: auto; max-height: 40em; background: #f8f8f8; padding: 0.5em; font-size: 0.85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
@media print { div.scroll { overflow: visible; max-height: none; } th { position: static; } }
"""

ANSWER_HEADERS = ("verdict", "answer")  # the leaderboard's and the claims table's answer columns
ANSWERS = ("better", "worse", "equivalent", "undecided")


def escape(text: object) -> str:
    return html.escape(str(text))


def answer_class(text: str) -> str:
    """The CSS class of an answer cell by its text (``better ...``, ``worse ...``, ``equivalent
    ...``, ``undecided ...``, ``= full (same runs ...)``/``same runs as ...``); '' otherwise (the
    reference's ``-``, ``n/a``)."""
    text = text.strip()
    for word in ANSWERS:
        if text.startswith(word):
            return f"answer-{word}"
    return "answer-same" if text.startswith(("=", "same runs")) else ""


def html_table(
    table_id: str,
    headers: list[str],
    rows: list[list[str]],
    numeric: Callable[[str], bool],
    row_classes: list[str] | None = None,
) -> str:
    """A table in a horizontally scrollable box (``div.scroll``: a wide table scrolls, the page
    does not), numeric columns right-aligned (``class="num"``) and answer cells (``verdict``,
    ``answer``) coloured by their answer (``answer_class``)."""

    def cls(h: str, cell: str | None = None) -> str:
        names = ["num"] if numeric(h) else []
        if cell is not None and h in ANSWER_HEADERS and (a := answer_class(cell)):
            names.append(a)
        return f' class="{" ".join(names)}"' if names else ""

    out = [
        f'<div class="scroll"><table id="{escape(table_id)}">',
        "<thead><tr>" + "".join(f"<th{cls(h)}>{escape(h)}</th>" for h in headers) + "</tr></thead>",
        "<tbody>",
    ]
    for i, r in enumerate(rows):
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{rc}>" + "".join(f"<td{cls(h, c)}>{escape(c)}</td>" for h, c in zip(headers, r)) + "</tr>")
    return "\n".join(out + ["</tbody>", "</table></div>"])


def page(heading: str, title: str, meta: str, body: list[str]) -> str:
    """A whole HTML page: inline style, no script, no external asset."""
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{escape(title)}</title>",
                f"<style>{STYLE}</style>",
                "</head><body>",
                f"<h1>{escape(heading)}</h1>",
                f'<p class="meta">{escape(meta)}</p>',
                *body,
                "</body></html>",
            ]
        )
        + "\n"
    )
