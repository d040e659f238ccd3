"""Helpers of the stack tests: state names, time intervals, simulated-site processes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import FlowRun, TaskRun

# Simulated jobs fast enough for the suite, slow enough to be seen running.
SIM_FAST: dict[str, Any] = {"job_seconds": 0.1, "draw_seconds": 0.05, "pause_seconds": 0.0}


def state_name(run: FlowRun | TaskRun) -> str | None:
    return run.state.name if run.state is not None else None


def step_name(task: TaskRun) -> str:
    """``step1_1`` of a task run: its key is ``step1_1-<code hash>`` (its name, the step's
    label and title, is for people)."""
    return task.task_key.rsplit("-", 1)[0]


def step_tasks(tasks: list[TaskRun]) -> list[TaskRun]:
    """Task runs of the workflow steps (``step1_1`` ... ``step8_3_submit``)."""
    return [t for t in tasks if t.task_key.startswith("step")]


def completed_names(tasks: list[TaskRun]) -> set[str]:
    """Steps with a Completed (or Cached) task run."""
    return {step_name(t) for t in step_tasks(tasks) if t.state and t.state.is_completed()}


def interval(tasks: list[TaskRun]) -> tuple[datetime, datetime]:
    """From the first step's start to the last step's end: when a run did its work."""
    ran = [t for t in step_tasks(tasks) if t.start_time is not None and t.end_time is not None]
    if not ran:
        raise AssertionError("no step of the run has both a start and an end time")
    return min(t.start_time for t in ran), max(t.end_time for t in ran)  # type: ignore[type-var]


def overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def live_sessions() -> dict[int, list[int]]:
    """session id -> live (non-zombie) pids, from one /proc scan."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        out.setdefault(int(fields[3]), []).append(int(entry.name))
    return out


def running_detached(control_dir: Path, run_key: str) -> list[str]:
    """Detached commands of ``run_key`` (control dirs ``<run_key>.*``) still alive.

    A detached command leads its own session (its pid is the session id), so it is alive as
    long as any process of that session is.
    """
    sessions = live_sessions()
    alive = []
    for ctl in sorted(control_dir.glob(f"{run_key}.*")):
        pid_file = ctl / "pid"
        if not ctl.is_dir() or not pid_file.is_file():
            continue
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        if sessions.get(pid):
            alive.append(ctl.name)
    return alive
