"""The console of a run: stage lines, honest ETAs (injected clock), the overall ETA, no Ray banners."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from harness import progress
from harness.cluster.connection import TOKEN_LOGGER, quiet_ray
from harness.cluster.teachers import TrajectoryTable
from harness.logs import console_logging
from harness.progress import Progress, StageLine, slot_eta


class Clock:
    """A fake clock: ``clock()`` is the time, ``clock.t += s`` moves it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lines_mode(monkeypatch):
    monkeypatch.setenv("CKD_PROGRESS", "lines")
    progress.reset_stages()
    yield
    progress.reset_stages()


def test_progress_eta_is_none_before_work_right_during_it_and_frozen_when_done(lines_mode):
    clock = Clock()
    p = Progress(10, "[demo]", "step", clock=clock, interval_s=float("inf"))
    clock.t = 30.0  # queued for 30 s: that is no work
    assert p.eta() is None
    p.start()
    for step in range(1, 11):
        clock.t += 2.0
        p.update()
        if step == 1:
            assert p.eta() == pytest.approx(18.0)  # 9 steps of 2 s, not diluted by the queue
            clock.t += 1.0  # half-way through step 2
            assert p.eta() == pytest.approx(17.0)
            clock.t -= 1.0
    assert p.eta() == 0.0
    frozen = p.line()
    clock.t += 100.0
    assert p.line() == frozen and "[00:20<00:00" in frozen  # a finished line no longer ticks


def test_slot_eta_runs_queued_jobs_after_a_slot_frees():
    assert slot_eta([10.0, 10.0], [10.0], slots=2) == 20.0  # 3 on 2 slots: two waves
    assert slot_eta([2.0, 10.0], [5.0], slots=2) == 10.0
    assert slot_eta([], [4.0, 4.0, 4.0], slots=3) == 4.0


def test_stage_line_once_per_interval_never_twice_the_same(lines_mode, logs):
    clock = Clock()
    line = StageLine(logging.getLogger("harness.test"), 10.0, clock)
    for t, state in [(0, "a"), (3, "b"), (10, "b"), (20, "b"), (30, "c"), (31, "d")]:
        clock.t = t
        line.offer(f"[x] {state}", 5.0)
    line.offer("[x] d", 0.0, final=True)  # the closing line: always, without an ETA
    line.offer("[x] d", 0.0, final=True)  # but not twice
    got = [m for m in logs.messages if m.startswith("[x]")]
    assert got == ["[x] a; ETA 0:05", "[x] b; ETA 0:05", "[x] c; ETA 0:05", "[x] d"]


def _board(table_rows: dict[str, tuple[str, int]]) -> dict:
    return {
        n: {"status": s, "epoch": e, "attempts": [{"first_epoch": 1}] if e else []} for n, (s, e) in table_rows.items()
    }


def test_teacher_stage_three_trajectories_on_two_slots(lines_mode, logs):
    """3 trajectories x 10 epochs of 3 s on 2 slots: 60 s in all; one line per 10 s, the ETA
    within 25% once a tenth is done, none while nothing ran, and a closing line."""
    clock = Clock()
    names = ["t0", "t1", "t2"]
    table = TrajectoryTable(names, epochs=10, interval_s=10.0, clock=clock)
    etas = {}
    for second in range(0, 61):
        clock.t = float(second)
        a, b = min(10, second // 3), max(0, min(10, (second - 30) // 3))
        rows = {"t0": a, "t1": a, "t2": b}
        state = {n: ("finished" if e == 10 else "running") for n, e in rows.items()}
        if second < 30:
            state["t2"] = "pending"
        manifests = {n: {} for n, s in state.items() if s == "finished"}
        table.update(second, _board({n: (state[n], e) for n, e in rows.items()}), manifests, {}, force=False)
        etas[second] = table.eta()
    table.close()
    assert etas[0] is None  # nothing ran: no ETA
    for second in range(6, 60):
        assert etas[second] == pytest.approx(60 - second, rel=0.25), second
    got = [m for m in logs.messages if m.startswith("[teachers]")]
    assert 6 <= len(got) <= 8, got
    assert got[0] == "[teachers] 0/3 finished, 2 running, 1 queued; 0/30 epochs"
    assert got[-1] == "[teachers] 3/3 finished, 0 running, 0 queued; 30/30 epochs"
    assert len(set(got)) == len(got)


def test_overall_eta_chains_the_stages(lines_mode):
    progress.publish("teachers", 40.0)
    progress.publish("scoring", 20.0, tail_s=30.0)  # the last trajectory still needs 30 s after the teachers
    progress.publish("students", None, tail_s=None)
    assert progress.overall_text() == "run ETA ≥ 1:10 (teachers 0:40, scoring 1:10, students ?)"
    progress.publish("students", 50.0, tail_s=40.0)
    assert progress.overall_text() == "run ETA 1:50 (teachers 0:40, scoring 1:10, students 1:50)"
    progress.publish("teachers", 0.0, done=True)
    assert progress.overall()[0] == 70.0 and "teachers" not in progress.overall_text()


def _trial(tid: str, status: str, members: int, epoch: int | None = None):
    runs = [{"teacher_choice": "none", "seed": i} for i in range(members)]
    result = {"epoch": epoch} if epoch else {}
    return SimpleNamespace(trial_id=tid, status=status, config={"runs": runs}, last_result=result)


def test_sweep_line_says_what_students_wait_for_and_estimates_from_epochs(lines_mode, logs):
    from harness.cluster.sweep_progress import SweepProgress

    clock = Clock()
    waits = iter(["the scorer (s0, s2)", None])
    sweep = SweepProgress(10.0, epochs=10, trials=6, waiting=lambda: next(waits), clock=clock)
    a = _trial("a", "RUNNING", 2, epoch=None)
    sweep.on_trial_start(0, [a], a)
    sweep.on_step_end(0, [a])
    assert sweep.eta([a], 4) is None  # no epoch finished: no ETA
    clock.t, a.last_result = 20.0, {"epoch": 2}  # 10 s an epoch: 80 s left for this pack of 2
    sweep.on_step_end(0, [a])
    # 4 students left in packs of 2 on one slot: two more packs of 100 s after this one
    assert sweep.eta([a], 4) == pytest.approx(280.0)
    got = [m for m in logs.messages if m.startswith("[sweep]")]
    assert got == [
        "[sweep] 0/6 students done, 2 running, 4 waiting for the scorer (s0, s2)",
        "[sweep] 0/6 students done, 2 running, 4 queued; ETA 4:40",
    ]


def test_sweep_eta_measures_the_pace_after_the_first_epoch_not_the_set_up(lines_mode):
    """A pack that spends 30 s on set-up (data, teacher logits) before 1 s epochs: after a second
    report its ETA is the epochs left at 1 s each, not 30 s each."""
    from harness.cluster.sweep_progress import SweepProgress

    clock = Clock()
    sweep = SweepProgress(10.0, epochs=10, trials=2, clock=clock)
    a = _trial("a", "RUNNING", 2, epoch=None)
    sweep.on_trial_start(0, [a], a)
    clock.t, a.last_result = 31.0, {"epoch": 1}
    sweep.on_trial_result(0, [a], a, a.last_result)
    assert sweep.eta([a], 0) == pytest.approx(31.0 * 9)  # one report: the only pace known
    clock.t, a.last_result = 33.0, {"epoch": 3}
    sweep.on_trial_result(0, [a], a, a.last_result)
    assert sweep.eta([a], 0) == pytest.approx(7.0)  # 1 s an epoch since the first report, 7 epochs left


def test_quiet_ray_hides_the_token_notice_and_tunes_box_unless_verbose(monkeypatch, capsys):
    """The token notice is dropped at its logger; Tune picks its old engine, which honours
    ``verbose=0`` (a real ``ckd`` run shows neither; with ``-v`` both come back)."""
    from ray.tune.experimental.output import get_air_verbosity

    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    token = logging.getLogger(TOKEN_LOGGER)
    with console_logging(0):
        quiet_ray()
        assert get_air_verbosity(0) is None  # the engine without the "Configuration for experiment" box
        token.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled")
        token.warning("Token authentication is disabled for this Ray cluster.")  # a real warning stays
    assert "is enabled" not in capsys.readouterr().err
    with console_logging(1):
        quiet_ray()
        assert get_air_verbosity(0) is not None
        assert not token.filters
