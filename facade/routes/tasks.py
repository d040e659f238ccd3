"""The legacy task routes: create, list, detail, progress, logs, start, pause, resume, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import func
from sqlmodel import select

from facade import legacy, lifecycle, resume, task_create
from facade.deps import GatewayDep, SessionDep, UserDep, owned_task, visible_tasks_query
from facade.errors import ApiError
from facade.execution_records import execution_records
from facade.models import Task
from facade.operator_input import waiting_for
from facade.responses import LegacyJSONResponse
from facade.schemas import (
    EXECUTION_EXAMPLE,
    LOG_EXAMPLE,
    TASK_EXAMPLE,
    CreateTaskBody,
    LevelName,
    ResumeBody,
    StatusName,
    error_example,
    example,
)
from facade.snapshots import snapshot, snapshots
from facade.tokens import USER_NAME_RE, ensure_user

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
NOT_FOUND = {404: example(error_example("Task not found"), "Unknown task or another user's")}


def _owner(session: SessionDep, user: UserDep, requested: str | int | None) -> str:
    """Who the new task belongs to: yourself; an admin may name another user."""
    if requested is None or str(requested) == user.name:
        return user.name
    if not user.is_admin:
        raise ApiError(403, "user_id does not match the authenticated user")
    name = str(requested)
    if not USER_NAME_RE.fullmatch(name):
        raise ApiError(422, "Invalid value for user_id: not a valid user name", field="user_id")
    ensure_user(session, name)
    return name


@router.post(
    "",
    status_code=201,
    responses={
        201: example(
            {
                "message": "Task created successfully",
                "status": "pending",
                "success": True,
                "task": TASK_EXAMPLE | {"status": "pending", "progress_percentage": 0},
                "task_id": 1,
            }
        ),
        400: example(error_example("Missing required parameter: date"), "Bad request"),
        422: example(error_example("Invalid parameter max_wait_minutes: ..."), "Invalid value"),
    },
)
async def create_task(
    body: CreateTaskBody, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> LegacyJSONResponse:
    """Create a task (nothing runs until ``/start``); parameters are validated and completed."""
    owner = _owner(session, user, body.user_id)
    extras = {"user_id": str(body.user_id)} if body.user_id is not None else {}
    task = task_create.create_task(
        session,
        owner=owner,
        workflow_name=body.workflow_name,
        workflow_version=body.workflow_version,
        task_name=body.task_name,
        parameters={**extras, **body.parameters},
    )
    snap = await snapshot(gateway, task)
    return LegacyJSONResponse(
        {
            "message": "Task created successfully",
            "status": snap.view.status,
            "success": True,
            "task": snap.record(),
            "task_id": task.id,
        },
        status_code=201,
    )


@router.get(
    "",
    responses={
        200: example(
            {"limit": 10, "offset": 0, "success": True, "tasks": [TASK_EXAMPLE], "total": 1}
        )
    },
)
async def list_tasks(
    request: Request,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    status: StatusName | None = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Your tasks, newest first (admins: everyone's, or one user's with ``user_id``).

    Flow runs started outside the facade (CLI, Prefect UI, schedules, backfills) are tasks
    too: their owner is the user they were started for (admins see all of them).
    """
    if user_id and user_id != user.name and not user.is_admin:
        raise ApiError(403, "user_id does not match the authenticated user")
    await request.app.state.adopter.sync(session, gateway)
    query = visible_tasks_query(user, user_id)
    newest = query.order_by(Task.created_at.desc(), Task.id.desc())  # type: ignore[union-attr]
    if status is None:
        count_query = select(func.count()).select_from(query.subquery())
        total = session.exec(count_query).one()
        page = list(session.exec(newest.offset(offset).limit(limit)).all())
        snaps = await snapshots(gateway, page)
    else:
        # Status lives in Prefect: derive it for every candidate, then page.
        everything = list(session.exec(newest).all())
        snaps = [s for s in await snapshots(gateway, everything) if s.view.status == status]
        total = len(snaps)
        snaps = snaps[offset : offset + limit]
    return {
        "limit": limit,
        "offset": offset,
        "success": True,
        "tasks": [s.record() for s in snaps],
        "total": total,
    }


@router.get(
    "/{task_id}",
    responses={
        200: example(
            {
                "success": True,
                "task": TASK_EXAMPLE
                | {
                    "executions": [EXECUTION_EXAMPLE],
                    "parameters": {"date": "250624", "round": "round18"},
                },
            }
        ),
        **NOT_FOUND,
    },
)
async def task_detail(
    task_id: int, request: Request, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Task with its executions (one per step attempt, across reruns) and parameters."""
    task = owned_task(session, user, task_id)
    snap = await snapshot(gateway, task)
    record = snap.record()
    record["executions"] = await execution_records(
        gateway, task, request.app.state.settings.database_url, snap
    )
    record["parameters"] = legacy.parameters_record(task)
    record["flow_run_history"] = list(task.flow_run_history)
    wait = None
    if snap.view.waiting_for_input and snap.flow_run is not None:
        wait = waiting_for(await gateway.pause_form(snap.flow_run))
    record["waiting_for"] = (
        {
            "field": wait.field,
            "options": wait.options,
            "fields": wait.fields,
            "description": wait.description,
        }
        if wait
        else None
    )
    return {"success": True, "task": record}


@router.get(
    "/{task_id}/progress",
    responses={
        200: example(
            {
                "success": True,
                "task_id": 1,
                "status": "running",
                "progress_percentage": 23,
                "current_step": "step2_1",
                "completed_steps": 5,
                "total_steps": 21,
                "created_at": "2026-03-07T08:39:46.952644",
                "started_at": "2026-03-07T08:39:50.101010",
                "completed_at": None,
                "estimated_completion_time": None,
            }
        ),
        **NOT_FOUND,
    },
)
async def task_progress(
    task_id: int, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Status and progress, read from Prefect."""
    task = owned_task(session, user, task_id)
    snap = await snapshot(gateway, task, history=False)
    return legacy.progress_record(task, snap.view)


async def task_logs_body(
    task: Task, gateway: GatewayDep, level: LevelName | None, limit: int
) -> dict[str, Any]:
    low, high = legacy.LEVEL_RANGES[level] if level else (None, None)
    logs = await gateway.logs(task.all_flow_run_ids(), limit=limit, min_level=low, max_level=high)
    snap = await snapshot(gateway, task)
    ids = legacy.execution_ids_by_task_run(task, snap.defn, snap.task_runs)
    records = [legacy.log_record(task, lg, ids) for lg in logs]
    return {"logs": records, "success": True, "total": len(records)}


@router.get(
    "/{task_id}/logs",
    responses={
        200: example({"logs": [LOG_EXAMPLE], "success": True, "total": 1}),
        **NOT_FOUND,
    },
)
async def task_logs(
    task_id: int,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    level: LevelName | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> dict[str, Any]:
    """The task's Prefect logs (flow and steps), newest first."""
    task = owned_task(session, user, task_id)
    return await task_logs_body(task, gateway, level, limit)


@router.post(
    "/{task_id}/start",
    responses={
        200: example(
            {"message": "Task started", "success": True, "task_id": 1, "flow_run_id": "..."}
        ),
        400: example(error_example("Cannot start task in running state"), "Not pending"),
        503: example(error_example("Workflow topup-standard@1.0.0 is not deployed"), "No dep."),
        **NOT_FOUND,
    },
)
async def start_task(
    task_id: int, request: Request, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Create the task's flow run from its workflow version's deployment (body ignored)."""
    task = owned_task(session, user, task_id)
    flow_run = await lifecycle.start(session, gateway, task)
    request.app.state.live.refresh(task_id)
    return {
        "message": "Task started",
        "success": True,
        "task_id": task_id,
        "flow_run_id": str(flow_run.id),
    }


@router.post(
    "/{task_id}/pause",
    responses={
        200: example({"message": "Task pausing", "status": "pausing", "success": True}),
        400: example(error_example("Cannot pause task in paused state"), "Not running"),
        **NOT_FOUND,
    },
)
async def pause_task(
    task_id: int, request: Request, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Suspend the flow run: the running step ends, then the run stops ("pausing" until then)."""
    task = owned_task(session, user, task_id)
    view = await lifecycle.pause(gateway, task)
    request.app.state.live.refresh(task_id, reported=view)
    message = "Task paused" if view.status == legacy.PAUSED else "Task pausing"
    return {"message": message, "status": view.status, "success": True, "task_id": task_id}


@router.post(
    "/{task_id}/resume",
    responses={
        200: example({"message": "Task resumed from step: step2_1", "success": True, "task_id": 1}),
        400: example(error_example("Unknown step: step9"), "Not resumable or bad step"),
        **NOT_FOUND,
    },
)
async def resume_task(
    task_id: int,
    request: Request,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    body: ResumeBody | None = None,
) -> dict[str, Any]:
    """Continue a paused run, retry a failed one, or rerun from ``retry_from_step``."""
    body = body or ResumeBody()
    task = owned_task(session, user, task_id)
    outcome = await resume.resume(
        session,
        gateway,
        task,
        parameters=body.parameters,
        retry_from_step=body.retry_from_step,
        decision=body.decision,
        note=body.note,
        operator=user.name,
        inputs=body.inputs,
    )
    request.app.state.live.refresh(task_id)
    return {
        "message": outcome.message,
        "success": True,
        "task_id": task_id,
        "flow_run_id": outcome.flow_run_id,
    }


@router.post(
    "/{task_id}/cancel",
    responses={
        200: example({"message": "Task cancelled", "status": "cancelled", "success": True}),
        400: example(error_example("Cannot cancel task in success state"), "Already final"),
        **NOT_FOUND,
    },
)
async def cancel_task(
    task_id: int, request: Request, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Cancel the flow run; the flow's cancellation hook removes its remote batch jobs."""
    task = owned_task(session, user, task_id)
    status = await lifecycle.cancel(session, gateway, task)
    request.app.state.live.refresh(task_id)
    return {"message": "Task cancelled", "status": status, "success": True, "task_id": task_id}
