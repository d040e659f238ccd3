"""The simulated HTCondor: the per-user scheduler, hep_q and hep_rm.

Submission (boss.condor, hep_sub) is bash (simsubmit.sh): it creates
``.sim/batch/jobs/<cluster>.<proc>/`` (``spec.json``, ``env``, ``state`` = I) and a queue entry
``.sim/batch/queue/<uid>/<cluster>.<proc>``, then starts this user's scheduler if none runs.

The scheduler (`schedd`, one process per user and tree, in its own session, detached from
any SSH channel) claims queued jobs and runs each in a thread: steps 1-2 jobs are produced
in Python; steps 3-6 jobs run their job file with bash in a new process group (whose id is
written to ``proc`` so hep_rm can kill it). It exits after a short idle time. Job states:
I idle, R running, H held (the ``held`` fault), C completed, X removed. ``hep_q`` lists,
like HTCondor's queue, only the jobs still in it (I, R, H): an ended job leaves it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from simcommon import BATCH, JOBS, append_line, state_write, tree_alive

ACTIVE = ("I", "R")
IDLE_EXIT_SECONDS = 2.0
POLL_SECONDS = 0.02


def owner() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def read_state(job_dir: Path) -> str:
    try:
        return (job_dir / "state").read_text().strip() or "?"
    except OSError:
        return "?"


def set_state(job_dir: Path, state: str) -> None:
    state_write(job_dir / "state", state + "\n")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# the scheduler


def _queued(queue: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(queue) if not e.name.startswith("."))
    except OSError:
        return []


def _job_thread(job_dir: Path) -> None:
    import simjobs

    try:
        simjobs.run_job(job_dir)
    except Exception:  # a simulator bug must not leave the job "running" for ever
        text = traceback.format_exc()
        append_line(BATCH / "schedd-errors.log", f"{job_dir.name}: {text}")
        try:
            spec = json.loads((job_dir / "spec.json").read_text())
            name = Path(spec["cwd"]) / spec["jobfile"]
            suffix = ".bosserr" if spec["kind"] == "boss.condor" else f".err.{job_dir.name}"
            Path(f"{name}{suffix}").write_text(f"job aborted: simulator error\n{text}")
        except Exception:
            pass
        set_state(job_dir, "C")


def schedd() -> int:
    uid = os.geteuid()
    queue = BATCH / "queue" / str(uid)
    lock = open(BATCH / f"schedd.{uid}.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    state_write(BATCH / f"schedd.{uid}.pid", f"{os.getpid()}\n")
    me = str(os.getpid())
    threads: list[threading.Thread] = []
    idle_since = time.monotonic()
    while tree_alive():
        names = _queued(queue)
        for name in names:
            try:
                os.unlink(queue / name)
            except OSError:
                continue  # claimed by someone else
            job_dir = JOBS / name
            if read_state(job_dir) != "I":
                continue
            state_write(job_dir / "pid", me + "\n")
            set_state(job_dir, "R")
            t = threading.Thread(target=_job_thread, args=(job_dir,), daemon=True)
            t.start()
            threads.append(t)
        threads = [t for t in threads if t.is_alive()]
        now = time.monotonic()
        if threads or names:
            idle_since = now
        elif now - idle_since > IDLE_EXIT_SECONDS:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if not _queued(queue):
                return 0
            try:  # a job arrived while we were leaving: stay, unless a new scheduler took over
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            idle_since = now
        time.sleep(POLL_SECONDS)
    return 0


# ---------------------------------------------------------------------------------------
# hep_q and hep_rm


def _spec(job_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((job_dir / "spec.json").read_text())
    except (OSError, ValueError):
        return None


def job_active(job_dir: Path) -> str | None:
    """The state of a job still in the queue (idle, held, or running for real), else None."""
    state = read_state(job_dir)
    if state in ("I", "H"):
        return state
    if state == "R":
        pid = read_pid(job_dir / "pid")
        if pid is not None and pid_alive(pid):
            return state
    return None


def active_jobs(user: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not JOBS.is_dir():
        return out
    for job_dir in JOBS.iterdir():
        state = job_active(job_dir)
        spec = _spec(job_dir) if state else None
        if spec is None or (user and spec.get("owner") != user):
            continue
        spec.update(state=state, id=job_dir.name)
        out.append(spec)
    out.sort(key=lambda s: (s["cluster"], s["proc"]))
    return out


def hep_q(argv: list[str]) -> int:
    user: str | None = None
    only: set[str] = set()
    i = 0
    while i < len(argv):
        if argv[i] == "-u" and i + 1 < len(argv):
            user = argv[i + 1]
            i += 2
        elif argv[i] == "-j" and i + 1 < len(argv):
            only.add(argv[i + 1])
            i += 2
        elif argv[i].startswith("-") and i + 1 < len(argv):
            i += 2
        else:
            only.add(argv[i])
            i += 1
    jobs = active_jobs(user)
    if only:
        jobs = [j for j in jobs if j["id"] in only or str(j["cluster"]) in only]
    now = time.time()
    stamp = time.strftime("%m/%d/%y %H:%M:%S")
    print(f"-- Schedd: sim-schedd@beslogin : <127.0.0.1:9618> @ {stamp}")
    print(f" {'ID':<12} {'OWNER':<8} {'SUBMITTED':<11} {'RUN_TIME':>12} ST PRI SIZE CMD")
    for job in jobs:
        submitted = time.strftime("%m/%d %H:%M", time.localtime(job["time"]))
        secs = max(0, int(now - job["time"]))
        run_time = (
            f"{secs // 86400}+{secs % 86400 // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
        )
        print(
            f" {job['id']:<12} {job['owner']:<8} {submitted:<11} {run_time:>12} "
            f"{job['state']}  0   0.0  {job['jobfile']} ({job['cwd']})"
        )
    idle = sum(1 for j in jobs if j["state"] == "I")
    held = sum(1 for j in jobs if j["state"] == "H")
    print(
        f"\n{len(jobs)} jobs; 0 completed, 0 removed, {idle} idle, "
        f"{len(jobs) - idle - held} running, {held} held, 0 suspended"
    )
    return 0


def remove_job(job_dir: Path) -> bool:
    """Mark the job removed (it then writes nothing) and kill its process group, if any."""
    if job_active(job_dir) is None:
        return False
    set_state(job_dir, "X")
    spec = _spec(job_dir) or {}
    queue_entry = BATCH / "queue" / str(spec.get("uid", "")) / job_dir.name
    try:
        queue_entry.unlink()
    except OSError:
        pass
    pgid = read_pid(job_dir / "proc")
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return True


def hep_rm(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("Usage: hep_rm <cluster>[.<proc>] ... | hep_rm -a\n")
        return 1
    dirs = sorted(JOBS.iterdir()) if JOBS.is_dir() else []
    if "-a" in argv:
        user = owner()
        removed = 0
        for job_dir in dirs:
            spec = _spec(job_dir)
            if spec is None or (user != "root" and spec.get("owner") != user):
                continue
            removed += remove_job(job_dir)
        print(f"All jobs of user {user} have been marked for removal ({removed} removed)")
        return 0
    status = 0
    for target in argv:
        if target.startswith("-"):
            continue
        cluster, _, proc = target.partition(".")
        if not cluster.isdigit() or (proc and not proc.isdigit()):
            sys.stderr.write(f"Invalid job id {target}\n")
            status = 1
            continue
        chosen = [
            d for d in dirs if d.name == target or (not proc and d.name.split(".")[0] == cluster)
        ]
        removed = sum(remove_job(d) for d in chosen)
        if removed and proc:
            print(f"Job {target} marked for removal")
        elif removed:
            print(f"All jobs in cluster {cluster} have been marked for removal")
        else:
            sys.stderr.write(f"Couldn't find/remove all jobs in cluster {cluster}\n")
            status = 1
    return status
