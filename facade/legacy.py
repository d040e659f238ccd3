"""Prefect state → the legacy task view (status, progress, current step, executions, logs).

Why pure functions: the facade stores no state machine of its own; everything a client sees
is derived here from the flow run, its task runs and its logs, so a restart loses nothing and
the same inputs always give the same answer (easy to test without a server).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun, Log, StateType, TaskRun

from facade import redact
from facade.models import Task
from facade.responses import iso
from flows.definitions import StepDefinition, WorkflowDefinition
from flows.naming import task_of

PENDING, RUNNING, PAUSING, PAUSED = "pending", "running", "pausing", "paused"
SUCCESS, FAILED, CANCELLED = "success", "failed", "cancelled"
FINAL = {SUCCESS, FAILED, CANCELLED}
STATUSES = (PENDING, RUNNING, PAUSING, PAUSED, SUCCESS, FAILED, CANCELLED)

_FLOW_STATUS = {
    StateType.SCHEDULED: RUNNING,
    StateType.PENDING: RUNNING,
    StateType.RUNNING: RUNNING,
    StateType.PAUSED: PAUSED,
    StateType.COMPLETED: SUCCESS,
    StateType.FAILED: FAILED,
    StateType.CRASHED: FAILED,
    StateType.CANCELLING: CANCELLED,
    StateType.CANCELLED: CANCELLED,
}
_TASK_STATUS = {
    StateType.SCHEDULED: "pending",
    StateType.PENDING: "pending",
    StateType.RUNNING: "running",
    StateType.PAUSED: "paused",
    StateType.COMPLETED: "success",
    StateType.FAILED: "failed",
    StateType.CRASHED: "failed",
    StateType.CANCELLING: "cancelled",
    StateType.CANCELLED: "cancelled",
}
# Legacy log levels are lower-case names; Prefect stores stdlib numbers.
LEVEL_RANGES = {"debug": (0, 19), "info": (20, 29), "warning": (30, 39), "error": (40, 100)}
ERROR_CODE_RE = re.compile(r"\[(\d{3,5}) ([A-Z0-9_]+)\]")
# An execution id packs the task id and the execution's position: stateless and stable,
# because a task's step task runs only ever get appended.
EXECUTION_STRIDE = 100_000


def level_name(level: int) -> str:
    for name, (low, high) in LEVEL_RANGES.items():
        if low <= level <= high:
            return name
    return "info"


def task_name_of(task_run: TaskRun) -> str:
    """The step task's name (``step1_1``): the task run's name is for people (label and
    title), its ``task_key`` is the task function's name and a hash of its code."""
    return task_of(task_run.task_key)


def _state_type(run: FlowRun | TaskRun | None) -> StateType | None:
    return run.state.type if run is not None and run.state is not None else None


def _started(tr: TaskRun) -> datetime:
    return tr.start_time or tr.expected_start_time or tr.created  # type: ignore[return-value]


@dataclass(frozen=True)
class StepRun:
    """A task run that belongs to a step of the definition."""

    step: StepDefinition
    order: int  # 1-based position in the definition
    task_run: TaskRun

    @property
    def cached(self) -> bool:
        return self.task_run.state is not None and self.task_run.state.name == "Cached"


def step_runs(defn: WorkflowDefinition, task_runs: Iterable[TaskRun]) -> list[StepRun]:
    """Task runs that are steps (helpers are ignored), in start order."""
    order = {s.id: i + 1 for i, s in enumerate(defn.steps)}
    out = []
    for tr in task_runs:
        step = defn.step_for_task(task_name_of(tr))
        if step is not None:
            out.append(StepRun(step, order[step.id], tr))
    out.sort(key=lambda sr: (sr.task_run.created or _started(sr.task_run), str(sr.task_run.id)))
    return out


def _latest_per_task(runs: Sequence[StepRun]) -> dict[str, StepRun]:
    latest: dict[str, StepRun] = {}
    for sr in runs:  # already in start order: later ones win
        latest[task_name_of(sr.task_run)] = sr
    return latest


@dataclass(frozen=True)
class TaskView:
    """Everything the legacy endpoints report about one task at one moment."""

    status: str
    progress: int
    current_step: str | None
    pause_at_step: str | None
    resume_from_step: str | None
    error_message: str | None
    started_at: datetime | None
    completed_at: datetime | None
    state_name: str | None
    waiting_for_input: bool
    completed_steps: int
    total_steps: int


def _is_suspended(flow_run: FlowRun) -> bool:
    details = flow_run.state.state_details if flow_run.state else None
    return bool(details and details.pause_reschedule)


def _waiting_for_input(flow_run: FlowRun | None) -> bool:
    if flow_run is None or flow_run.state is None or not flow_run.state.is_paused():
        return False
    return flow_run.state.state_details.run_input_keyset is not None


def task_view(
    task: Task,
    defn: WorkflowDefinition,
    flow_run: FlowRun | None,
    task_runs: Sequence[TaskRun],
) -> TaskView:
    """The legacy view of ``task`` from its current flow run and that run's task runs."""
    total = len(defn.steps)
    if flow_run is None:
        status = CANCELLED if task.cancelled_before_start_at else PENDING
        return TaskView(
            status, 0, None, None, None, None, None, task.cancelled_before_start_at,
            None, False, 0, total,
        )  # fmt: skip
    current = [tr for tr in task_runs if tr.flow_run_id == flow_run.id]
    runs = step_runs(defn, current)
    latest = _latest_per_task(runs)
    state_type = _state_type(flow_run)
    status = _FLOW_STATUS.get(state_type, RUNNING) if state_type else RUNNING
    running = [sr for sr in latest.values() if _state_type(sr.task_run) == StateType.RUNNING]
    if status == PAUSED and _is_suspended(flow_run) and running:
        status = PAUSING  # suspension takes effect when the running step ends

    start_at = flow_run.parameters.get("start_at_step") if flow_run.parameters else None
    skipped = (
        set(defn.step_ids[: defn.step_ids.index(start_at)]) if start_at in defn.step_ids else set()
    )
    done = 0
    for step in defn.steps:
        if step.id in skipped:
            done += 1
            continue
        # Done once each of its tasks completed in this flow run: a resumed run replays
        # completed steps (Pending, then Cached), which must not move progress back.
        completed = {
            task_name_of(sr.task_run)
            for sr in runs
            if sr.step.id == step.id and _state_type(sr.task_run) == StateType.COMPLETED
        }
        finished = set(step.tasks) <= completed or (bool(completed) and status == SUCCESS)
        done += int(finished)
    progress = 100 if status == SUCCESS else (done * 100 // total if total else 0)

    # The legacy "last step that finished": null before the first one ends and after success.
    current_step = None
    if status == SUCCESS:
        pass
    elif running:
        current_step = max(running, key=lambda sr: _started(sr.task_run)).step.id
    elif runs:
        current_step = max(
            runs, key=lambda sr: sr.task_run.end_time or _started(sr.task_run)
        ).step.id

    error = None
    if status == FAILED and flow_run.state is not None:
        error = redact.clean(flow_run.state.message or flow_run.state.name)
    return TaskView(
        status=status,
        progress=progress,
        current_step=current_step,
        pause_at_step=current_step if status in (PAUSED, PAUSING) else None,
        resume_from_step=start_at,
        error_message=error,
        started_at=flow_run.start_time,
        # Cancelling has no end time yet: the legacy cancel set completed_at at once.
        completed_at=(flow_run.end_time or (flow_run.state.timestamp if flow_run.state else None))
        if status in FINAL
        else None,
        state_name=flow_run.state.name if flow_run.state else None,
        waiting_for_input=_waiting_for_input(flow_run),
        completed_steps=done,
        total_steps=total,
    )


def date_param(task: Task) -> str | None:
    value = task.parameters.get("date")
    return str(value) if value is not None else None


def task_record(task: Task, view: TaskView) -> dict[str, Any]:
    """The legacy Task object (§1.1) plus a few additive fields."""
    return {
        "id": task.id,
        "user_id": task.user_name,
        "workflow_id": task.workflow_id,
        "workflow_name": task.workflow_name,
        "workflow_version": task.workflow_version,
        "task_name": task.task_name,
        "date_param": date_param(task),
        "status": view.status,
        "progress_percentage": view.progress,
        "current_step": view.current_step,
        "pause_at_step": view.pause_at_step,
        "resume_from_step": view.resume_from_step,
        "error_message": view.error_message,
        "created_at": iso(task.created_at),
        "started_at": iso(view.started_at),
        "completed_at": iso(view.completed_at),
        "estimated_completion_time": None,
        "flow_run_id": task.flow_run_id,
        "state_name": view.state_name,
        "waiting_for_input": view.waiting_for_input,
    }


def progress_record(task: Task, view: TaskView) -> dict[str, Any]:
    return {
        "success": True,
        "task_id": task.id,
        "status": view.status,
        "progress_percentage": view.progress,
        "current_step": view.current_step,
        "created_at": iso(task.created_at),
        "started_at": iso(view.started_at),
        "completed_at": iso(view.completed_at),
        "estimated_completion_time": None,
        "completed_steps": view.completed_steps,
        "total_steps": view.total_steps,
    }


def parameters_record(task: Task) -> dict[str, Any]:
    """The task's parameters as sent to the flow, plus the legacy extras the client sent."""
    return {**task.extras, **task.parameters}


def error_code(message: str | None) -> tuple[int | None, str | None]:
    """The dictionary code in a step failure message (``[1103 NAME] ...``), if any."""
    if not message:
        return None, None
    m = ERROR_CODE_RE.search(message)
    return (int(m.group(1)), m.group(2)) if m else (None, None)


def execution_id(task_id: int, ordinal: int) -> int:
    return task_id * EXECUTION_STRIDE + ordinal


def split_execution_id(value: int) -> tuple[int, int]:
    return divmod(value, EXECUTION_STRIDE)


def executions(
    task: Task,
    defn: WorkflowDefinition,
    task_runs: Sequence[TaskRun],
    logs_by_task_run: dict[str, list[Log]] | None = None,
    *,
    console_limit: int = 64 * 1024,
) -> list[dict[str, Any]]:
    """One record per step attempt (task run), oldest first; Cached replays are left out."""
    out = []
    assert task.id is not None
    for ordinal, sr in enumerate(step_runs(defn, task_runs), start=1):
        if sr.cached:
            continue
        tr = sr.task_run
        state = tr.state
        status = _TASK_STATUS.get(state.type, "pending") if state else "pending"
        message = redact.clean(state.message) if state else None
        code, code_name = error_code(message) if status == "failed" else (None, None)
        lines = [
            redact.clean(lg.message) or "" for lg in (logs_by_task_run or {}).get(str(tr.id), [])
        ]
        console = "\n".join(lines)
        if len(console) > console_limit:
            console = console[-console_limit:]
        duration = int(tr.total_run_time.total_seconds()) if tr.total_run_time else None
        out.append(
            {
                "id": execution_id(task.id, ordinal),
                "task_id": task.id,
                "created_at": iso(tr.created),
                "step_name": sr.step.id,
                "step_display_name": sr.step.title,
                "step_label": sr.step.label,
                "step_order": sr.order,
                "task_run_name": task_name_of(tr),
                "status": status,
                "start_time": iso(tr.start_time),
                "end_time": iso(tr.end_time),
                "duration_seconds": duration if status not in ("pending", "running") else None,
                "retry_count": max(0, (tr.run_count or 1) - 1),
                "output_summary": (lines[-1] if lines else None) if status == "success" else None,
                "error_details": message if status == "failed" else None,
                "error_code": code,
                "error_name": code_name,
                "step_result_json": {},
                "console_output": console,
                "flow_run_id": str(tr.flow_run_id) if tr.flow_run_id else None,
                "task_run_id": str(tr.id),
            }
        )
    return out


def find_execution(
    task: Task, defn: WorkflowDefinition, task_runs: Sequence[TaskRun], ordinal: int
) -> StepRun | None:
    runs = step_runs(defn, task_runs)
    return runs[ordinal - 1] if 1 <= ordinal <= len(runs) else None


def log_record(task: Task, log: Log, execution_ids: dict[str, int]) -> dict[str, Any]:
    task_run = str(log.task_run_id) if log.task_run_id else None
    return {
        "id": str(log.id),
        "task_id": task.id,
        "execution_id": execution_ids.get(task_run) if task_run else None,
        "level": level_name(log.level),
        "message": redact.clean(log.message),
        "timestamp": iso(log.timestamp),
        "source": log.name,
        "created_at": iso(log.created or log.timestamp),
        "flow_run_id": str(log.flow_run_id) if log.flow_run_id else None,
        "task_run_id": task_run,
    }


def execution_ids_by_task_run(
    task: Task, defn: WorkflowDefinition, task_runs: Sequence[TaskRun]
) -> dict[str, int]:
    assert task.id is not None
    return {
        str(sr.task_run.id): execution_id(task.id, i)
        for i, sr in enumerate(step_runs(defn, task_runs), start=1)
    }
