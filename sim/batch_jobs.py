"""The batch system of a simulated tree seen from Python: its submissions, live jobs, processes.

Why apart from ``sim/site.py``: this is the process side of a tree (``/proc``, signals, the
job state files ``simbatch.py`` writes under ``.sim/batch``); the ``SimSite`` handle passes
its paths in. The DB ledger is read here too, being another log the tree's scripts append to.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any


def _pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _pid_cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _pid_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _ancestors() -> set[int]:
    """This process and its parents: never killed by the sweep."""
    out = {0, 1}
    pid = os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def submissions(state_dir: Path) -> list[dict[str, Any]]:
    """Every batch submission so far, one dict per job, in submission order."""
    path = state_dir / "batch/submissions.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def db_ledger(ledger_path: Path) -> list[dict[str, Any]]:
    """Every simulated DB insert (genInsertCmd.sh -sub_switch 1)."""
    if not ledger_path.exists():
        return []
    return [json.loads(line) for line in ledger_path.read_text().splitlines() if line.strip()]


def _job_dirs(state_dir: Path) -> list[Path]:
    jobs = state_dir / "batch/jobs"
    return sorted(jobs.iterdir()) if jobs.is_dir() else []


def _owns(root: Path, pid: int) -> bool:
    """The pid still belongs to this tree (guards against pid reuse)."""
    prefix = str(root) + "/"
    return any(a.startswith(prefix) for a in _pid_cmdline(pid))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def active_jobs(root: Path, state_dir: Path) -> list[dict[str, Any]]:
    """Jobs idle, held or running (what ``hep_q`` lists), oldest first.

    Idle: submitted, not yet claimed by the scheduler. Held: the ``held`` fault. Running:
    claimed by a scheduler process that is still alive.
    """
    out = []
    for job_dir in _job_dirs(state_dir):
        try:
            state = (job_dir / "state").read_text().strip()
            spec = json.loads((job_dir / "spec.json").read_text())
        except (OSError, ValueError):
            continue
        if state == "R":
            pid = _read_int(job_dir / "pid")
            if pid is None or _pid_state(pid) in ("", "Z") or not _owns(root, pid):
                continue
        elif state not in ("I", "H"):
            continue
        spec.update(state=state, id=job_dir.name)
        out.append(spec)
    return out


def wait_jobs(root: Path, state_dir: Path, timeout: float = 30.0, poll: float = 0.05) -> bool:
    """Wait until no job is idle or running; False on timeout."""
    deadline = time.monotonic() + timeout
    while active_jobs(root, state_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def tree_processes(root: Path) -> list[int]:
    """Processes working in this tree (cwd or an argument inside it)."""
    prefix = str(root) + "/"
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in skip or _pid_state(pid) in ("", "Z"):
            continue
        cwd = _pid_cwd(pid) + "/"
        if cwd.startswith(prefix) or any(a.startswith(prefix) for a in _pid_cmdline(pid)):
            found.append(pid)
    return found


def stop_jobs(root: Path, state_dir: Path, timeout: float = 5.0) -> int:
    """Remove every job and kill every process of the tree; returns how many were hit.

    Jobs are marked removed (so nothing writes outputs afterwards), the process groups
    of running step 3-6 jobs and the schedulers are killed, then every remaining process
    working in the tree (detached scripts, drawings, sleeps) until none is left.
    """
    killed: set[int] = set()
    for job_dir in _job_dirs(state_dir):
        try:
            state = (job_dir / "state").read_text().strip()
        except OSError:
            continue
        if state not in ("I", "R", "H"):
            continue
        (job_dir / "state").write_text("X\n")
        pgid = _read_int(job_dir / "proc")
        if pgid is not None and _pid_state(pgid) not in ("", "Z") and _owns(root, pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed.add(pgid)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout
    while True:
        pids = tree_processes(root)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    queue = state_dir / "batch/queue"
    if queue.is_dir():
        for entry in queue.glob("*/*"):
            entry.unlink(missing_ok=True)
    procs = state_dir / "procs"
    if procs.is_dir():
        for marker in procs.iterdir():
            marker.unlink(missing_ok=True)
    return len(killed)
