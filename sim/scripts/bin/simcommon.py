"""Shared helpers of the simulated site's tools (stdlib only: they run as the site user).

The tree root is found from this file's location (<root>/sim/bin/simcommon.py), so the
tools need no environment variable and work from any working directory.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".sim"
BATCH = STATE / "batch"
JOBS = BATCH / "jobs"
PROCS = STATE / "procs"
SUBMISSIONS = BATCH / "submissions.log"
LEDGER = STATE / "db_ledger.log"
FAULTS = STATE / "faults.json"

DEFAULT_FAULTS: dict[str, Any] = {
    "job_seconds": 0.2,
    "never_finish": {},
    "fail": {},
    "empty_output": {},
    "crash": {},
    "crash_line": "terminate called after throwing an instance of 'std::bad_alloc'",
    "held": {},
    "logs_at_start": False,
    "array_jobs": False,
    "ist": {},
    "interval_run0": [],
    "slow": {},
    "script_exit": {},
    "script_output": {},
    "container_exit": None,
    "sftp_fail": False,
    "noise_runs": [85391, 85400],
    "growing": [],
    "grow_seconds": 1.0,
    "draw_seconds": 0.2,
    "pause_seconds": 0.0,
    "realistic_time": False,
    "time_compression": 300.0,
    "slow_runs": [],
}


def job_seconds(f: dict[str, Any], stage: str, run: int | None) -> float:
    """How long a batch job runs: ``job_seconds``, or in realistic-time mode 10-25 min per
    (stage, run), 45 min for a slow run, divided by ``time_compression`` (the formula of
    ``sim.faults.realistic_job_seconds``)."""
    if not f.get("realistic_time"):
        return float(f.get("job_seconds", 0.2))
    import hashlib

    digest = hashlib.sha256(f"{stage}:{run}".encode()).hexdigest()
    minutes = 10.0 + 15.0 * int(digest[:8], 16) / 0xFFFFFFFF
    if run is not None and run in set(f.get("slow_runs") or ()):
        minutes = 45.0
    return minutes * 60.0 / float(f.get("time_compression") or 300.0)

BREAK_LINES = (
    "\n *** Break *** segmentation violation\n\n"
    "===========================================================\n"
    "There was a crash.\n"
    "This is the entire stack trace of all threads:\n"
    "===========================================================\n"
    "#0  0x00002b7a3c1e96ac in waitpid () from /lib64/libc.so.6\n"
    "#1  0x00002b7a3c166f22 in do_system () from /lib64/libc.so.6\n"
    "===========================================================\n"
)


def faults() -> dict[str, Any]:
    """The current faults (read at every use, so tests can change them at any time)."""
    data = dict(DEFAULT_FAULTS)
    try:
        data.update(json.loads(FAULTS.read_text()))
    except (OSError, ValueError):
        pass
    return data


def stage_runs(f: dict[str, Any], key: str, stage: str) -> set[int]:
    return {int(r) for r in (f.get(key) or {}).get(str(stage), [])}


def tree_alive() -> bool:
    """False once the tree was removed: background processes then end by themselves."""
    return BATCH.is_dir()


def wait(seconds: float, alive: Any = None) -> bool:
    """Sleep in small slices; False if the tree disappeared (or ``alive()`` went false)."""
    end = time.monotonic() + max(0.0, seconds)
    while True:
        if not tree_alive() or (alive is not None and not alive()):
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(0.05, left))


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write under a hidden temporary name, then rename: a poll never sees half a file."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_name(f".{path.name}.simtmp.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def state_write(path: Path, text: str) -> None:
    """State files are shared by root (local transport) and the site user (SSH)."""
    atomic_write(path, text, 0o666)


def state_mkdir(path: Path) -> None:
    old = os.umask(0)
    try:
        path.mkdir(mode=0o777, parents=True, exist_ok=True)
    finally:
        os.umask(old)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write (O_APPEND): concurrent writers never interleave."""
    old = os.umask(0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    finally:
        os.umask(old)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def register_proc() -> Path | None:
    """Record this process so SimSite.stop_jobs can find it (root drawings etc.)."""
    try:
        state_mkdir(PROCS)
        marker = PROCS / str(os.getpid())
        state_write(marker, f"{os.getpid()}\n")
        return marker
    except OSError:
        return None


def unregister_proc(marker: Path | None) -> None:
    if marker is not None:
        try:
            marker.unlink()
        except OSError:
            pass


def _once(key: str) -> bool:
    """True the first time ``key`` is seen in this tree."""
    once = STATE / "once"
    state_mkdir(once)
    try:
        fd = os.open(once / key.replace("/", "_"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def hook(names: list[str], get: list[str] | None = None, once: list[str] | None = None) -> int:
    """Start of every shipped script: apply `slow`, `script_output`, `script_exit`.

    Prints the values of ``get`` keys (one per line) so a script reads its parameters
    with the same interpreter start. ``once`` entries ``name:key`` apply ``slow[name]`` only
    the first time ``key`` is seen (hadd sleeps for the generated mergeHist.sh, which has
    no hook line of its own, once per calling shell).
    """
    f = faults()
    for item in once or []:
        name, _, key = item.partition(":")
        delay = float((f.get("slow") or {}).get(name, 0) or 0)
        if delay > 0 and _once(f"{name}-{key}"):
            marker = register_proc()
            try:
                wait(delay)
            finally:
                unregister_proc(marker)
    for name in names:
        delay = float((f.get("slow") or {}).get(name, 0) or 0)
        if delay > 0:
            marker = register_proc()
            try:
                wait(delay)
            finally:
                unregister_proc(marker)
    for name in names:
        text = (f.get("script_output") or {}).get(name)
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    for name in names:
        code = (f.get("script_exit") or {}).get(name)
        if code is not None and int(code) != 0:
            sys.stderr.write(f"{name}: simulated failure (exit {int(code)})\n")
            sys.stdout.flush()
            return int(code)
    for key in get or []:
        value = f.get(key)
        sys.stdout.write(("" if value is None else str(value)) + "\n")
    sys.stdout.flush()
    return 0


def base_of_hist(hist_path: str) -> Path:
    """BASE (…/DataValid) from the ntuple directory a job was given (…/DataValid/hist/)."""
    return Path(hist_path.rstrip("/")).parent


def now_text() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y")
