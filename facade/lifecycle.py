"""Start, pause and cancel a task: which state allows each, and what it asks of Prefect.

Why its own module: the rules live here once instead of in route functions; ``/resume``,
the one action with many cases, has its own module (``facade/resume.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.client.schemas.objects import FlowRun, StateType
from sqlalchemy import update
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from facade import legacy, workflows
from facade.date_checks import guard_dates
from facade.errors import ApiError, bad_request
from facade.flow_runs import new_flow_run
from facade.models import Task
from facade.prefect_gateway import GatewayError, PrefectGateway
from facade.snapshots import Snapshot, snapshot


async def start(session: Session, gateway: PrefectGateway, task: Task) -> FlowRun:
    snap = await snapshot(gateway, task, history=False)
    if snap.view.status != legacy.PENDING:
        raise bad_request(f"Cannot start task in {snap.view.status} state")
    # Again at start: a date may have been processed, or listed, since the task was created.
    await run_in_threadpool(
        guard_dates,
        session,
        snap.defn,
        task.parameters,
        workflows.rerun_flag(task.extras),
    )
    flow_run = await new_flow_run(gateway, task, task.parameters)
    # Only the first starter records the run (a concurrent start got the same run anyway).
    session.exec(  # type: ignore[call-overload]
        update(Task)
        .where(Task.id == task.id, Task.flow_run_id.is_(None))  # type: ignore[union-attr]
        .values(flow_run_id=str(flow_run.id))
    )
    session.commit()
    session.refresh(task)
    return flow_run


def _not_inside_a_backfill(snap: Snapshot, action: str) -> None:
    """One date of a backfill runs inside the backfill's process (a subflow): Prefect can
    neither suspend it on its own ("Cannot suspend subflows") nor stop it without stopping
    that process, so the answer says what to do instead of accepting a no-op."""
    if snap.flow_run is not None and snap.flow_run.parent_task_run_id is not None:
        raise ApiError(
            409,
            f"Cannot {action} task: it is one date of a backfill and runs inside the "
            "backfill's flow run; pause or cancel the backfill's task instead",
        )


async def pause(gateway: PrefectGateway, task: Task) -> legacy.TaskView:
    snap = await snapshot(gateway, task, history=False)
    state = snap.flow_run.state.type if snap.flow_run and snap.flow_run.state else None
    if snap.view.status != legacy.RUNNING:
        raise bad_request(f"Cannot pause task in {snap.view.status} state")
    if state != StateType.RUNNING:
        raise ApiError(409, "The task's flow run has not started yet; pause it once it runs")
    _not_inside_a_backfill(snap, "pause")
    try:
        await gateway.suspend(str(task.flow_run_id))
    except GatewayError as exc:
        raise ApiError(409, f"Cannot pause task: {exc}") from None
    return (await snapshot(gateway, task, history=False)).view


async def cancel(session: Session, gateway: PrefectGateway, task: Task) -> str:
    snap = await snapshot(gateway, task, history=False)
    status = snap.view.status
    if status in legacy.FINAL:
        raise bad_request(f"Cannot cancel task in {status} state")
    if task.flow_run_id is None:
        task.cancelled_before_start_at = datetime.now(UTC)
        session.add(task)
        session.commit()
        return legacy.CANCELLED
    _not_inside_a_backfill(snap, "cancel")
    try:
        await gateway.cancel(task.flow_run_id)
    except GatewayError as exc:
        raise ApiError(409, f"Cannot cancel task: {exc}") from None
    return legacy.CANCELLED
