"""Progress and logging set-up: bars on a terminal, periodic grep-able lines elsewhere."""

from __future__ import annotations

import io
import logging
import re

import pytest
import torch

from harness import progress
from harness.logs import console_logging, file_log
from harness.progress import Progress, track
from harness.training import train_epoch

LINE = re.compile(r"^\[demo\] (\d+)/10 step \[\d\d:\d\d<[\d:?]+, *[\d.?]+(step/s|s/step)\](, .*)?$")


@pytest.fixture
def lines_mode(monkeypatch):
    monkeypatch.setenv("CKD_PROGRESS", "lines")
    yield
    progress.configure(mode="auto", interval_s=10.0)


def test_lines_mode_logs_counts_rate_and_eta_at_most_every_interval(lines_mode, logs, monkeypatch):
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))  # one "second" per call
    with Progress(10, "[demo]", "step", interval_s=3.0) as p:
        for _ in range(10):
            p.set_postfix("loss 0.5")
            p.update()
    got = [m for m in logs.messages if m.startswith("[demo]")]
    assert 2 <= len(got) <= 5, got  # periodic, not one per step
    assert all(LINE.match(m) for m in got), got
    assert got[-1].startswith("[demo] 10/10 step") and got[-1].endswith(", loss 0.5")  # closing line


def test_quick_work_stays_quiet_unless_a_final_line_is_asked_for(lines_mode, logs):
    list(track(range(5), "[demo]", "step", interval_s=60.0))
    assert not any(m.startswith("[demo]") for m in logs.messages)
    with Progress(3, "[stage]", "run", interval_s=60.0, final_line=True) as p:
        p.update(3)
    got = [m for m in logs.messages if m.startswith("[stage]")]
    assert len(got) == 1 and got[0].startswith("[stage] 3/3 run [")


def test_bar_mode_draws_a_tqdm_bar_and_log_lines_do_not_tear_it(monkeypatch):
    monkeypatch.setenv("CKD_PROGRESS", "bar")
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    with console_logging(0, stream=stream):
        with Progress(4, "[demo]", "step") as p:
            p.update(2)
            logging.getLogger("harness.test").info("a line in the middle")
            p.update(2)
    out = stream.getvalue()
    assert "[demo]: 100%" in out and "4/4" in out  # tqdm's own bar format
    assert "\ra line in the middle\n" in out  # tqdm.write: the bar is cleared, the line written, the bar redrawn


def test_mode_follows_the_terminal_and_the_environment(monkeypatch):
    monkeypatch.delenv("CKD_PROGRESS", raising=False)
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())  # not a TTY
    assert progress.mode() == "lines"
    monkeypatch.setattr(progress.sys, "stderr", object())  # a wrapper without isatty (Ray Tune's Tee)
    assert progress.mode() == "lines"
    monkeypatch.setenv("CKD_PROGRESS", "off")
    assert progress.mode() == "off"
    with pytest.raises(ValueError, match="progress mode"):
        progress.configure(mode="fancy")


def test_train_epoch_reports_progress_within_the_epoch(lines_mode, logs):
    progress.configure(interval_s=0.0)  # every batch: the test epoch is short
    model = torch.nn.Linear(4, 2)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(5)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = lambda logits, x, y: torch.nn.functional.cross_entropy(logits, y)  # noqa: E731
    train_epoch(model, batches, opt, loss, torch.device("cpu"), progress="[net] epoch 1")
    got = [m for m in logs.messages if m.startswith("[net] epoch 1")]
    assert got[0].startswith("[net] epoch 1 1/5 batch [") and got[-1].startswith("[net] epoch 1 5/5 batch [")


def test_console_verbosity_and_file_log(tmp_path):
    stream = io.StringIO()
    log = logging.getLogger("harness.test")
    with console_logging(-1, stream=stream), file_log(tmp_path / "x.log"):
        log.info("detail")
        log.warning("careful")
    assert stream.getvalue() == "warning: careful\n"  # -q: warnings only, with their level
    text = (tmp_path / "x.log").read_text()
    assert "INFO harness.test: detail" in text and "WARNING harness.test: careful" in text
    assert not any(getattr(h, "_ckd_console", False) for h in logging.getLogger("harness").handlers)  # removed
