"""Execution routes: a task's step attempts (Prefect task runs) and the files each produced."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from facade import legacy, outputs
from facade.deps import GatewayDep, SessionDep, UserDep, owned_task
from facade.errors import ApiError
from facade.execution_records import execution_records
from facade.schemas import EXECUTION_EXAMPLE, error_example, example
from facade.snapshots import snapshot

router = APIRouter(prefix="/api/executions", tags=["executions"])


@router.get(
    "",
    responses={200: example({"executions": [EXECUTION_EXAMPLE], "success": True, "total": 1})},
)
async def executions_by_query(
    request: Request,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    task_id: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    """Same as ``/api/executions/<task_id>`` (the form the legacy docs advertised)."""
    return await task_executions(task_id, request, session, user, gateway)


@router.get(
    "/{task_id}",
    responses={
        200: example({"executions": [EXECUTION_EXAMPLE], "success": True, "total": 1}),
        404: example(error_example("Task not found"), "Unknown task"),
    },
)
async def task_executions(
    task_id: int, request: Request, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """One record per step attempt, oldest first, with the step's recorded result."""
    task = owned_task(session, user, task_id)
    records = await execution_records(gateway, task, request.app.state.settings.database_url)
    return {"executions": records, "success": True, "total": len(records)}


@router.get(
    "/{execution_id}/outputs",
    responses={
        200: example(
            {
                "outputs": [
                    {
                        "id": 7,
                        "execution_id": 100004,
                        "output_type": "file",
                        "output_path": "/besfs5/.../mergedd_IST.pdf",
                        "file_size_bytes": 52311,
                        "file_hash": "9f2c...",
                        "content_type": "application/pdf",
                        "metadata": {"role": "pdf", "run": None},
                    }
                ],
                "success": True,
                "total": 1,
            }
        ),
        404: example(error_example("Execution not found"), "Unknown execution"),
    },
)
async def execution_outputs(
    execution_id: int, request: Request, session: SessionDep, user: UserDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Files the step attempt produced, verified or downloaded (size and sha256)."""
    task_id, ordinal = legacy.split_execution_id(execution_id)
    try:
        task = owned_task(session, user, task_id)
    except ApiError:
        raise ApiError(404, "Execution not found") from None
    snap = await snapshot(gateway, task)
    found = legacy.find_execution(task, snap.defn, snap.task_runs, ordinal)
    if found is None:
        raise ApiError(404, "Execution not found")
    tr = found.task_run
    url = request.app.state.settings.database_url
    rows = await run_in_threadpool(outputs.files, url, str(tr.flow_run_id), legacy.task_name_of(tr))
    records = [outputs.output_record(r, execution_id) for r in rows]
    return {"outputs": records, "success": True, "total": len(records)}
