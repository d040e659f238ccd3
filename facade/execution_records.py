"""A task's executions (one per step attempt) with their console lines and step results.

Why its own module: an execution joins three sources (Prefect's task runs, Prefect's logs
and the outputs store's step results); the task detail and the executions routes share it.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import Log
from starlette.concurrency import run_in_threadpool

from facade import legacy, outputs, redact
from facade.models import Task
from facade.prefect_gateway import PrefectGateway
from facade.snapshots import Snapshot, snapshot

CONSOLE_LOG_LIMIT = 5000


async def logs_by_task_run(gateway: PrefectGateway, task: Task, limit: int) -> dict[str, list[Log]]:
    # The newest ``limit`` lines (a long run's last steps matter most), in time order.
    logs = await gateway.logs(task.all_flow_run_ids(), limit=limit, newest_first=True)
    grouped: dict[str, list[Log]] = {}
    for log in reversed(logs):
        if log.task_run_id:
            grouped.setdefault(str(log.task_run_id), []).append(log)
    return grouped


async def execution_records(
    gateway: PrefectGateway, task: Task, database_url: str, snap: Snapshot | None = None
) -> list[dict[str, Any]]:
    """Executions from Prefect's task runs and logs, with each step's recorded result."""
    snap = snap or await snapshot(gateway, task)
    logs = await logs_by_task_run(gateway, task, CONSOLE_LOG_LIMIT)
    records = legacy.executions(task, snap.defn, snap.task_runs, logs)
    results = await run_in_threadpool(outputs.step_results, database_url, task.all_flow_run_ids())
    for rec in records:
        row = results.get((rec["flow_run_id"], rec["task_run_name"]))
        duration = rec.get("duration_seconds")
        rec["step_result_json"] = outputs.step_result_json(
            row,
            task_id=task.id,
            step_order=rec["step_order"],
            elapsed=float(duration) if duration is not None else None,
        )
        if row is not None and rec["status"] in ("success", "failed"):
            rec["output_summary"] = redact.clean(row.message) or rec["output_summary"]
    return records
