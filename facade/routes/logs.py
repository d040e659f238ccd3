"""``/api/logs``: a task's Prefect logs (the legacy stub, now real)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from facade.deps import GatewayDep, SessionDep, UserDep, owned_task
from facade.routes.tasks import task_logs_body
from facade.schemas import LOG_EXAMPLE, LevelName, error_example, example

router = APIRouter(prefix="/api/logs", tags=["logs"])
RESPONSES = {
    200: example({"logs": [LOG_EXAMPLE], "success": True, "total": 1}),
    404: example(error_example("Task not found"), "Unknown task"),
}


@router.get("", responses=RESPONSES)
async def logs_by_query(
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    task_id: Annotated[int, Query(ge=1)],
    level: LevelName | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> dict[str, Any]:
    """``?task_id=&level=``: the form the legacy documentation advertised."""
    task = owned_task(session, user, task_id)
    return await task_logs_body(task, gateway, level, limit)


@router.get("/{task_id}", responses=RESPONSES)
async def logs_of_task(
    task_id: int,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    level: LevelName | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> dict[str, Any]:
    """Newest first; ``level`` is one of debug, info, warning, error."""
    task = owned_task(session, user, task_id)
    return await task_logs_body(task, gateway, level, limit)
