"""``/api/logs``: a task's Prefect logs (the legacy stub, now real)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from facade.deps import GatewayDep, SessionDep, UserDep, owned_task
from facade.routes.tasks import task_logs, task_logs_body
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


# The same endpoint as ``GET /api/tasks/{task_id}/logs``, under this router's own name and
# description (the operation id and summary follow the name).
router.add_api_route(
    "/{task_id}",
    task_logs,
    methods=["GET"],
    name="logs_of_task",
    description="Newest first; ``level`` is one of debug, info, warning, error.",
    responses=RESPONSES,
)
