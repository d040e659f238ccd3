"""A task as Prefect sees it at one moment: its run, its task runs and the legacy view.

Why its own module: the REST routes, the WebSocket, Socket.IO and every control action
read tasks this way, and batching the Prefect requests for many tasks lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import FlowRun, TaskRun

from facade import legacy, workflows
from facade.errors import ApiError
from facade.models import Task
from facade.prefect_gateway import PrefectGateway
from flows.definitions import WorkflowDefinition


@dataclass
class Snapshot:
    """A task with everything read from Prefect for it at one moment."""

    task: Task
    defn: WorkflowDefinition
    flow_run: FlowRun | None
    task_runs: list[TaskRun]  # of all the task's flow runs
    view: legacy.TaskView

    def record(self) -> dict[str, Any]:
        return legacy.task_record(self.task, self.view)


def definition_of(task: Task) -> WorkflowDefinition:
    try:
        return workflows.resolve(task.workflow_name, task.workflow_version)
    except workflows.UnknownWorkflow:
        # The definition was removed after the task was created: the task still shows.
        raise ApiError(
            409, f"Workflow {task.workflow_name}@{task.workflow_version} is no longer defined"
        ) from None


async def snapshots(
    gateway: PrefectGateway, tasks: list[Task], *, history: bool = False
) -> list[Snapshot]:
    """Views of several tasks with two Prefect requests (runs, then their task runs)."""
    current = [t.flow_run_id for t in tasks if t.flow_run_id]
    runs = await gateway.read_runs(current)
    wanted = [i for t in tasks for i in (t.all_flow_run_ids() if history else [t.flow_run_id])]
    task_runs = await gateway.task_runs([i for i in wanted if i])
    by_flow: dict[str, list[TaskRun]] = {}
    for tr in task_runs:
        by_flow.setdefault(str(tr.flow_run_id), []).append(tr)
    out = []
    # Resolving scans the definition files' mtimes: once per workflow version per call.
    defns: dict[tuple[str, str], WorkflowDefinition] = {}
    for task in tasks:
        ref = (task.workflow_name, task.workflow_version)
        defn = defns.get(ref) or defns.setdefault(ref, definition_of(task))
        flow_run = runs.get(task.flow_run_id) if task.flow_run_id else None
        mine = [tr for fid in task.all_flow_run_ids() for tr in by_flow.get(fid, [])]
        view = legacy.task_view(task, defn, flow_run, mine)
        out.append(Snapshot(task, defn, flow_run, mine, view))
    return out


async def snapshot(gateway: PrefectGateway, task: Task, *, history: bool = True) -> Snapshot:
    return (await snapshots(gateway, [task], history=history))[0]
