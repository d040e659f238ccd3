"""ManagedProcess: a process tree, including children in sessions of their own, is stopped
completely (the worker starts each flow run with setsid)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from topup_cli.processes import ManagedProcess, alive

# A parent that ignores SIGTERM, with one child in its own session that ignores it too.
SCRIPT = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [sys.executable, "-c",
     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"],
    start_new_session=True,
)
print("child", child.pid, flush=True)
time.sleep(300)
"""


def _start(tmp_path: Path) -> ManagedProcess:
    proc = ManagedProcess(
        "tree", [sys.executable, "-c", SCRIPT], dict(os.environ), tmp_path, tmp_path / "t.log"
    ).start()
    deadline = time.monotonic() + 20
    while len(proc.tree()) < 2:
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.05)
    return proc


def test_stop_escalates_and_reaches_other_sessions(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    tree = proc.tree()
    assert proc.pid is not None
    child = tree[1][0]
    assert os.getsid(child) != os.getsid(proc.pid), "the child should lead its own session"
    started = time.monotonic()
    assert proc.stop(timeout=0.5)
    assert time.monotonic() - started < 10
    assert not any(alive(k) for k in tree)
    assert "=== start tree" in (tmp_path / "t.log").read_text()


def test_kill_ends_the_tree_at_once(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    tree = proc.tree()
    assert proc.kill()
    assert not any(alive(k) for k in tree)
    assert not proc.running()
