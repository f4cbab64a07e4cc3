"""The self-contained HTML report, opened in a real headless browser (Debian's chromium).

`.ci/run` installs chromium when it is missing; without any chromium binary the browser test is
skipped with the reason. The page is loaded from a file with networking features off; a small
script, added to a copy of the page here (the report itself has none), writes what the browser
rendered into attributes of <body>, and ``--dump-dom`` hands the DOM back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.config_loading import load_config
from harness.report.report import write_report
from harness.store import CheckpointStore
from tests.helpers import QUICKSTART
from tests.synthetic_results import fill_store, planted_rows, traj, write_scores

EPOCHS = {10: -0.02, 20: 0.0, 30: 0.0, 40: 0.012, 50: 0.0, 60: 0.0, 70: 0.0, 80: 0.0}
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images], b = document.body;
  const rows = id => document.querySelectorAll(`#${id} tbody tr`).length;
  b.setAttribute("data-images", imgs.length);
  b.setAttribute("data-rendered", imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length);
  b.setAttribute("data-leaderboard-rows", rows("leaderboard"));
  b.setAttribute("data-claims-rows", rows("claims"));
  b.setAttribute("data-selector-rows", rows("selectors-0"));
  b.setAttribute("data-num-align", getComputedStyle(document.querySelector("#leaderboard td.num")).textAlign);
});
</script>"""


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
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:)', text) == [] and "http://" not in text and "https://" not in text
    assert "<script" not in text and text.count('src="data:image/png;base64,') == len(rep.plots) == 4
    assert (
        "ckd-harness report: quickstart" in text
        and "config hash" in text
        and re.search(r"generated \d{4}-\d\d-\d\d", text)
    )
    for section in ("Leaderboard", "The paper's claims", "Selector evaluation", "Plots"):
        assert section in text
    assert text.count('<td class="num">') > 50  # numbers are marked for right alignment


def test_headless_chromium_renders_the_rows_and_every_image(report, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary found (`.ci/run` installs Debian's chromium: apt-get install chromium)")
    page, rep = report
    probe = tmp_path / "probe.html"
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
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", out.stdout)
    assert out.returncode == 0 and body, out.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert attrs["images"] == "4" and attrs["rendered"] == "4", (
        attrs
    )  # forest, acc vs epoch, ensembles, regret vs compute
    assert int(attrs["leaderboard-rows"]) == len(rep.board) and int(attrs["claims-rows"]) == len(rep.claims) == 4
    assert int(attrs["selector-rows"]) == 3  # paper + the two baselines
    assert attrs["num-align"] == "right"
