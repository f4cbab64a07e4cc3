"""Concurrent harness processes share the cores instead of oversubscribing them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from harness import cpu_share


def test_threads_are_the_fair_share_among_live_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_share, "SLOTS", tmp_path / "slots")
    monkeypatch.setattr(cpu_share, "available_cores", lambda: 4)
    monkeypatch.setattr(cpu_share, "_held", {})
    assert cpu_share.fair_threads() == 4  # alone: every core
    holder = textwrap.dedent(f"""
        import os, sys
        os.environ["CKD_CPU_SLOTS"] = {str(tmp_path / "slots")!r}
        from harness import cpu_share
        cpu_share.claim_slot()
        print("held", flush=True)
        sys.stdin.read()
    """)
    others = [
        subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        assert all(p.stdout.readline().strip() == "held" for p in others)
        assert cpu_share.fair_threads() == 1  # 4 cores, 4 live processes
        others[0].kill()
        others[0].wait()
        assert cpu_share.fair_threads() == 1  # 4 // 3
        others[1].kill()
        others[1].wait()
        assert cpu_share.fair_threads() == 2  # a dead holder's slot is stale and removed
    finally:
        for p in others:
            p.kill()
            p.wait()
    assert cpu_share.fair_threads() == 4
    cpu_share.release_slot()
