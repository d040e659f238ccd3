"""What the fault scenarios measure: submissions, output rows, leftovers, injection points.

Why a module of its own: every scenario of ``test_faults.py`` asserts the same end state
(no duplicate batch submission, the output rows of a clean reference run, nothing left running
on the site) and injects its fault at a point it recognises by observing the run — never by
sleeping. These are the observations.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prefect.client.schemas.objects import TaskRun

from store import repository
from tests.stack.helpers import step_name, step_tasks

T = TypeVar("T")

# Short jobs, but long enough (job_seconds) that a wait for them can be hit.
SIM_CHAOS: dict[str, Any] = {"job_seconds": 0.1, "draw_seconds": 0.05, "pause_seconds": 0.0}


def poll(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Return the first truthy value of ``condition``; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------- submissions


def submission_key(sub: dict[str, Any], root: Path) -> tuple[str, str]:
    """(job directory relative to the site root, job file): one batch job of one stage/run."""
    cwd = str(sub.get("cwd", ""))
    rel = cwd[len(str(root)) :] if cwd.startswith(str(root)) else cwd
    return rel, str(sub.get("jobfile", ""))


def duplicate_submissions(submissions: list[dict[str, Any]], root: Path) -> int:
    """Jobs submitted more than once (same stage directory and job file), counted in excess."""
    counts = Counter(submission_key(s, root) for s in submissions)
    return sum(n - 1 for n in counts.values() if n > 1)


# ----------------------------------------------------------------------- output rows

Row = tuple[str, str, int | None, str, str]  # (step, task, run, path, role)

# Files whose bytes depend on the site they were made on, not only on the data: the job
# option files and BOSS logs spell out the site's absolute paths, merged PDFs carry their
# creation time. Their hashes cannot match a reference run on another site; each is checked
# against the file itself instead (when it is still where it was recorded).
SITE_SPECIFIC = (
    re.compile(r"/rec\d+_\d+\.txt$"),
    re.compile(r"/rec\d+_\d+(\.txt)?\.boss(log|err)$"),
    re.compile(r"\.pdf$"),
)


@dataclass(frozen=True)
class Outputs:
    """A run's recorded files: keys (machine paths replaced by placeholders, so runs on two
    different simulated sites compare) and their sha256."""

    hashes: dict[Row, str]
    real_paths: dict[Row, str]

    @property
    def keys(self) -> set[Row]:
        return set(self.hashes)


def output_rows(flow_run_id: str, db_url: str, prefixes: dict[str, str]) -> Outputs:
    """``prefixes``: machine path prefix -> placeholder."""

    def norm(path: str) -> str:
        for prefix, name in prefixes.items():
            if path.startswith(prefix):
                return name + path[len(prefix) :]
        return path

    hashes: dict[Row, str] = {}
    real: dict[Row, str] = {}
    for o in repository.outputs(flow_run_id, url=db_url):
        key = (o.step_id, o.task_name, o.run, norm(o.path), o.role)
        hashes[key] = o.sha256
        real[key] = o.local_path or o.path
    return Outputs(hashes, real)


def site_specific(path: str) -> bool:
    return any(p.search(path) for p in SITE_SPECIFIC)


def file_sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass
class RowCheck:
    """The comparison of a run's outputs with a clean reference run's."""

    lost: list[Row]
    extra: list[Row]
    bad_hash: list[Row]
    checked_on_disk: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.extra or self.bad_hash)


def compare_rows(expected: Outputs, actual: Outputs) -> RowCheck:
    """Same keys; same sha256 as the reference, or, for site-specific files, the sha256 of
    the file itself when it is still there (later steps move some files away)."""
    lost = sorted(expected.keys - actual.keys, key=str)
    extra = sorted(actual.keys - expected.keys, key=str)
    bad: list[Row] = []
    on_disk = 0
    for key in sorted(expected.keys & actual.keys, key=str):
        if not site_specific(key[3]):
            if actual.hashes[key] != expected.hashes[key]:
                bad.append(key)
            continue
        real = file_sha256(actual.real_paths[key])
        if real is not None:
            on_disk += 1
            if real != actual.hashes[key]:
                bad.append(key)
    return RowCheck(lost, extra, bad, on_disk)


# --------------------------------------------------------------------- leftovers


def orphans(sim: Any) -> list[str]:
    """Batch jobs still queued or running, and processes still working in the site tree."""
    jobs = [f"job {j['id']} ({j['state']})" for j in sim.active_jobs()]
    procs = []
    for pid in sim.tree_processes():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        procs.append(f"pid {pid}: {cmd[:160]}")
    return jobs + procs


def wait_no_orphans(sim: Any, timeout: float = 30.0) -> list[str]:
    """Leftovers once the site had ``timeout`` seconds to settle (batch schedulers exit when
    their queue is empty); an empty list is the expected answer."""
    deadline = time.monotonic() + timeout
    while True:
        left = orphans(sim)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


# --------------------------------------------------------------- injection points


def task_state(tasks: list[TaskRun], step: str) -> str | None:
    """State name of the newest task run of ``step`` (None: not created yet)."""
    named = [t for t in step_tasks(tasks) if step_name(t) == step]
    if not named:
        return None
    newest = named[-1]
    return newest.state.name if newest.state else None


def running_detached_dirs(control_dir: Path, run_key: str, marker: str) -> list[str]:
    """Control dirs ``<run_key>.*<marker>*`` of detached commands that have no exit code yet
    (``rc`` is written when the command ends)."""
    return [
        d.name
        for d in sorted(control_dir.glob(f"{run_key}.*"))
        if d.is_dir() and marker in d.name and (d / "pid").is_file() and not (d / "rc").exists()
    ]


def jobs_waiting(sim: Any, stage_dir: str) -> list[dict[str, Any]]:
    """Active batch jobs whose directory contains ``stage_dir`` (e.g. ``/InjSigTimeCal/``)."""
    return [j for j in sim.active_jobs() if stage_dir in str(j.get("cwd", ""))]


def summary(**values: Any) -> str:
    """A compact, stable text of measured values for the results record."""
    return json.dumps(values, sort_keys=True, default=str)
