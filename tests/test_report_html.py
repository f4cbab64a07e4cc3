"""The self-contained HTML report, opened in a real headless browser (Debian's chromium).

`.ci/run` installs chromium when it is missing; without any chromium binary the browser test is
skipped with the reason. The page is loaded from a file with networking features off; a small
script, added to a copy of the page here (the report itself has none), writes what the browser
rendered into attributes of <body>, and ``--dump-dom`` hands the DOM back; the same call writes a
screenshot (``--screenshot``) at each width into the test's tmp dir. To look at them::

    WANDB_MODE=disabled .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_report_html.py \
        --basetemp=/tmp/ckd-html    # then /tmp/ckd-html/html0/page-{900,1400}.png
"""

from __future__ import annotations

import html
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from harness.config import to_dict
from harness.config_loading import load_config
from harness.fingerprint import source_commit
from harness.report.html import run_section
from harness.report.report import write_report
from harness.report.tables import answer_class
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows, traj, write_scores

EPOCHS = {10: -0.02, 20: 0.0, 30: 0.0, 40: 0.012, 50: 0.0, 60: 0.0, 70: 0.0, 80: 0.0}
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images], b = document.body, root = document.documentElement;
  const rows = id => document.querySelectorAll(`#${id} tbody tr`).length;
  b.setAttribute("data-images", imgs.length);
  b.setAttribute("data-rendered", imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length);
  b.setAttribute("data-leaderboard-rows", rows("leaderboard"));
  b.setAttribute("data-claims-rows", rows("claims"));
  b.setAttribute("data-selector-rows", rows("selectors-0"));
  b.setAttribute("data-num-align", getComputedStyle(document.querySelector("#leaderboard td.num")).textAlign);
  b.setAttribute("data-inner-width", window.innerWidth);
  b.setAttribute("data-page-width", Math.max(b.scrollWidth, root.scrollWidth));
  b.setAttribute("data-better-colour", getComputedStyle(document.querySelector("td.answer-better")).backgroundColor);
  // every table's box: how wide, whether it scrolls, whether its last header cell comes into view
  b.setAttribute("data-boxes", [...document.querySelectorAll("div.scroll")].map(box => {
    const overflow = getComputedStyle(box).overflowX, wide = box.scrollWidth > box.clientWidth;
    box.scrollLeft = box.scrollWidth;
    const th = box.querySelector("thead th:last-child").getBoundingClientRect(), r = box.getBoundingClientRect();
    const reached = th.right <= r.right + 1 && th.left >= r.left - 1 && r.right <= window.innerWidth;
    box.scrollLeft = 0;
    return `${box.firstElementChild.id}:${overflow}:${wide}:${reached}`;
  }).join(" "));
});
</script>"""

WIDTHS = (900, 1400)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("html")
    cfg = load_config(QUICKSTART, [f"storage={tmp}", "tracking.mode=disabled"])
    store = CheckpointStore(tmp, cfg.name)
    fill_store(
        store,
        planted_rows(
            EPOCHS, {"snapshot:[0.5,1.0]": -0.012, "full_ensemble:2": 0.0, "selected:paper": 0.0}, picks={"paper": 40}
        ),
    )
    for t in range(5):
        write_scores(store, traj(t), list(EPOCHS), {"paper": {"epoch": 40}}, {"paper": {e: e / 80 for e in EPOCHS}})
    rep = write_report(cfg)
    return store.root / "leaderboard.html", rep


def test_the_page_is_self_contained_with_every_section(report):
    page, rep = report
    text = page.read_text()
    assert (
        re.findall(r'(?:src|href)\s*=\s*"(?!data:|#)', text) == [] and "http://" not in text and "https://" not in text
    )
    assert "<script" not in text and text.count('src="data:image/png;base64,') == len(rep.plots) == 4
    assert (
        "ckd-harness report: quickstart" in text
        and "config hash" in text
        and re.search(r"generated \d{4}-\d\d-\d\d", text)
    )
    for section in ("Leaderboard", "The paper's claims", "Selector evaluation", "Plots", "Run"):
        assert f"<h2>{section}</h2>" in text
    assert text.count('<td class="num">') > 50  # numbers are marked for right alignment
    tables = re.findall(r'<table id="([^"]+)">', text)
    assert text.count('<div class="scroll"><table id=') == len(tables) >= 4  # every table in its scroll box


def test_contents_link_every_section_and_plot_and_captions_are_words(report):
    text = report[0].read_text()
    contents = text[text.index('<nav class="contents">') : text.index("</nav>")]
    targets = re.findall(r'href="#([^"]+)"', contents)
    assert targets[:3] == ["s-leaderboard", "s-claims", "s-selectors"] and targets[-1] == "s-run"
    assert len(targets) == 5 + 4 and all(f'id="{t}"' in text for t in targets)  # 5 sections, 4 plots
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", text)
    assert "Paired difference to full, per teacher choice (forest-mnist1d-mlp_small.png)" in captions
    assert len(captions) == 4 and all(re.fullmatch(r"[A-Z][^(]+ \([\w.-]+\.png\)", c) for c in captions), captions


def test_answers_are_coloured_by_answer(report):
    text = report[0].read_text()
    cells = re.findall(r'<td class="answer-(\w+)">([^<]*)</td>', text)
    kinds = {k for k, _ in cells}
    assert kinds == {"better", "worse", "equivalent", "same"}, cells  # the planted board has no undecided row
    for kind, cell in cells:
        assert cell.startswith(kind) or (kind == "same" and cell.startswith(("=", "same runs"))), (kind, cell)
    assert answer_class("undecided: about 7 more trajectories would decide it") == "answer-undecided"
    assert (
        answer_class("= full (same runs: not tested)") == answer_class("same runs as full: not tested") == "answer-same"
    )
    assert answer_class("-") == answer_class("n/a") == ""


def test_the_run_section_has_commit_versions_device_time_and_the_config(report):
    page, rep = report
    run = page.read_text().split('<section id="s-run">')[1]
    facts = dict(re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td></tr>", run))
    commit, dirty = source_commit()
    assert facts["harness commit"] == commit[:10] + ("+dirty" if dirty else "")
    assert facts["python"] == platform.python_version() and facts["torch"] == metadata.version("torch")
    assert facts["numpy"] == metadata.version("numpy") and facts["scipy"] == metadata.version("scipy")
    pack_s = sum(r["wall_time_s"] / r.get("pack_size", 1) for r in rep.rows)
    assert (
        facts["student training"].startswith(f"{pack_s / 3600:.2f} device-hours")
        and f"{len(rep.rows)} student" in (facts["student training"])
    )
    assert facts["wall time"].startswith("no ckd run recorded")  # the fixture wrote rows, not a ckd run
    cfg = load_config(QUICKSTART, [f"storage={page.parents[1]}", "tracking.mode=disabled"])
    from harness.pipeline import _store_stage_times
    from harness.report.html import stage_times

    _store_stage_times(cfg, {"teachers": 12.0, "sweep": 3.25}, 15.5)
    assert stage_times(cfg).startswith("teachers 12.0 s, sweep 3.2 s; total 15.5 s (ckd run finished 20")
    config = html.unescape(run[run.index("<pre>") + 5 : run.index("</pre>")])
    assert "<details><summary>Resolved config (YAML)</summary>" in run
    assert yaml.safe_load(config) == to_dict(
        load_config(QUICKSTART, [f"storage={page.parents[1]}", "tracking.mode=disabled"])
    )


def chromium_probe(browser: str, page: Path, out: Path, width: int) -> dict[str, str]:
    """Open the page with the probe at ``width`` px; the body's data attributes, and a screenshot."""
    probe = out / f"probe-{width}.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={out / 'profile'}",
        f"--window-size={width},2400",
        "--virtual-time-budget=10000",
        f"--screenshot={out / f'page-{width}.png'}",
        "--dump-dom",
        probe.as_uri(),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", run.stdout)
    assert run.returncode == 0 and body, run.stderr[-2000:]
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))


@pytest.mark.parametrize("width", WIDTHS)
def test_headless_chromium_renders_everything_and_cuts_nothing_off(report, width, tmp_path_factory):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary found (`.ci/run` installs Debian's chromium: apt-get install chromium)")
    page, rep = report
    out = page.parents[1]  # the module's tmp dir (html0): the screenshots stay next to the report
    attrs = chromium_probe(browser, page, out, width)
    assert attrs["images"] == "4" and attrs["rendered"] == "4", attrs  # forest, acc vs epoch, ensembles, regret
    assert int(attrs["leaderboard-rows"]) == len(rep.board) and int(attrs["claims-rows"]) == len(rep.claims) == 4
    assert int(attrs["selector-rows"]) == 3  # paper + the two baselines
    assert attrs["num-align"] == "right" and attrs["better-colour"] not in ("", "rgba(0, 0, 0, 0)")
    assert attrs["inner-width"] == str(width) and int(attrs["page-width"]) <= width, attrs  # the page never scrolls
    boxes = {b.split(":")[0]: b.split(":")[1:] for b in attrs["boxes"].split()}
    assert len(boxes) >= 4 and all(overflow == "auto" and reached == "true" for overflow, _, reached in boxes.values())
    assert boxes["leaderboard"][1] == "true"  # the 18 columns are wider than the window: its box scrolls
    if width == 900:
        assert boxes["claims"][1] == "true"
    assert (out / f"page-{width}.png").stat().st_size > 10_000


def test_the_run_section_names_each_environment_the_runs_trained_in(report):
    page, rep = report
    cfg = load_config(QUICKSTART, [f"storage={page.parents[1]}", "tracking.mode=disabled"])
    env = {"device_name": "NVIDIA H100", "device": "cuda", "threads": 4, "precision": "fp32", "torch": "2.4.0"}
    env |= {"cuda": "12.4", "commit": "0123456789abcdef"}
    rows = [
        {"wall_time_s": 360.0, "pack_size": 3, "environment": env},
        {"wall_time_s": 360.0, "pack_size": 3, "environment": env},
        {"wall_time_s": 360.0, "pack_size": 3, "environment": env},
        {"wall_time_s": 60.0, "environment": {**env, "device": "cpu", "device_name": "Xeon", "cuda": None}},
    ]
    text = "\n".join(run_section(cfg, rows, "now"))
    table = text[text.index('<table id="environments">') :]
    assert table.count("<tbody>") == 1 and table.count("<tr>") == 3  # header + two environments
    assert (
        "<td>NVIDIA H100</td><td>cuda</td><td>4</td><td>fp32</td><td>2.4.0</td><td>12.4</td><td>0123456789</td>"
        in table
    )
    assert '<td class="num">3</td>' in table and '<td class="num">1</td>' in table
    assert "0.12 device-hours (7.0 min) over 4 student runs" in text  # 3 x 360 s / 3 (one pack) + 60 s
