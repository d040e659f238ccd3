"""``GET /api/stats``: per-step durations, failures by code and step, runs by state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from facade import stats, workflows
from facade.deps import GatewayDep, SessionDep, UserDep, visible_tasks_query
from facade.errors import ApiError
from facade.responses import iso
from facade.schemas import example

router = APIRouter(prefix="/api", tags=["stats"])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get(
    "/stats",
    responses={
        200: example(
            {
                "success": True,
                "window": {"since": "2026-03-01T00:00:00.000000", "until": "..."},
                "scope": "own",
                "steps": {
                    "step1_1": {
                        "completed": 12,
                        "failed": 1,
                        "median_seconds": 912.4,
                        "p95_seconds": 1301.0,
                        "mean_seconds": 950.2,
                    }
                },
                "failures": [
                    {"step": "step1_1", "error_code": 1103, "error_name": "X", "count": 1}
                ],
                "runs_by_state": {"success": 11, "failed": 1},
                "runs_total": 12,
            }
        )
    },
)
async def get_stats(
    request: Request,
    session: SessionDep,
    user: UserDep,
    gateway: GatewayDep,
    since: datetime | None = None,
    until: datetime | None = None,
    hours: Annotated[float | None, Query(gt=0, le=24 * 366)] = None,
) -> dict[str, Any]:
    """Over ``since``..``until`` (ISO, UTC) or the last ``hours`` (default: a week).

    Admins see every run of the workflows; other users only their own tasks' runs."""
    end = _utc(until) if until else datetime.now(UTC)
    if since is not None:
        start = _utc(since)
    else:
        start = end - timedelta(hours=hours or request.app.state.settings.stats_default_hours)
    if start >= end:
        raise ApiError(422, "Invalid window: since must be before until")
    definitions = workflows.all_definitions()
    if user.is_admin:
        flows = sorted({d.flow for d in definitions})
        runs = await gateway.flow_runs_between(start, end, flow_names=flows)
    else:
        ids = [
            i for t in session.exec(visible_tasks_query(user)).all() for i in t.all_flow_run_ids()
        ]
        runs = await gateway.flow_runs_between(start, end, flow_run_ids=ids) if ids else []
    task_runs = await gateway.task_runs_between(start, end, [str(r.id) for r in runs])
    body = stats.compute(runs, task_runs, definitions)
    return {
        "success": True,
        "window": {"since": iso(start), "until": iso(end)},
        "scope": "all" if user.is_admin else "own",
        **body,
    }
