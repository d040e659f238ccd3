"""Physics at a glance: a task's date summary and a round's trends, as JSON or PNG.

Why from the store only: the numbers are the ones the steps read from the site's files
(``store.physics``); the facade never reaches the site. Drawing runs in the threadpool so a
plot does not hold the event loop; the reads are a few indexed lookups.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from facade.deps import SessionDep, SettingsDep, UserDep, owned_task
from facade.errors import ApiError
from facade.models import Task
from facade.schemas import error_example, example
from store import physics, repository

router = APIRouter(tags=["physics"])

ROUND_PATTERN = r"^round\d{1,6}$"
DATE_PATTERN = r"^\d{6}$"
RoundPath = Annotated[str, Path(pattern=ROUND_PATTERN, description="e.g. round18")]
HighlightQuery = Annotated[
    str | None,
    Query(pattern=DATE_PATTERN, description="date to highlight (default: the newest one)"),
]
PNG = {
    200: {
        "description": "PNG plot (matplotlib)",
        "content": {
            "image/png": {
                "schema": {"type": "string", "format": "binary"},
                "example": "\\x89PNG... (binary image)",
            }
        },
    }
}
RUN_EXAMPLE = {
    "run": 85391,
    "ist": {
        "interval_From_DB": 15000000,
        "interval_before_sorting": 15000000,
        "interval_after_sorting": 15000000,
    },
    "windows": [[0.52, 4.18], [21.77, 22.37], [41.8, 42.4]],
    "ets_cuts": [[734.125, 735.325], [1851.2, 1851.95]],
    "registered": True,
    "excluded": None,
    "to_database": True,
    "anomalies": [],
}
SUMMARY_EXAMPLE = example(
    {
        "success": True,
        "task_id": 1,
        "summary": {
            "round": "round18",
            "date": "250624",
            "status": "verified",
            "expected_ist": 15000000,
            "runs": [RUN_EXAMPLE],
            "runs_to_database": [85391],
            "anomalies": 0,
        },
    }
)
TRENDS_EXAMPLE = example(
    {
        "success": True,
        "trends": {
            "round": "round18",
            "dates": ["250624", "250625"],
            "highlight": "250625",
            "points": [
                {
                    "date": "250624",
                    "run": 85391,
                    "windows": RUN_EXAMPLE["windows"],
                    "ets_cuts": RUN_EXAMPLE["ets_cuts"],
                }
            ],
        },
    }
)
TASK_NOT_FOUND = {404: example(error_example("Task not found"), "Unknown task or another user's")}
NO_DATE = {400: example(error_example("Task has no date"), "Not a one-date workflow")}


class SummaryResponse(BaseModel):
    success: bool = True
    task_id: int
    summary: physics.DateSummary


class TrendsResponse(BaseModel):
    success: bool = True
    trends: physics.RoundTrends


def _round_and_date(task: Task, database_url: str) -> tuple[str, str]:
    """The task's round and date, as its newest flow run recorded them (else its parameters)."""
    for fid in reversed(task.all_flow_run_ids()):
        row = repository.workflow_run(fid, url=database_url)
        if row is not None and row.round and row.date:
            return row.round, row.date
    params: dict[str, Any] = task.parameters or {}
    rnd, date = params.get("round"), params.get("date")
    if isinstance(rnd, str) and isinstance(date, str) and date:
        return rnd, date
    raise ApiError(400, "Task has no date")


def _summary(
    session: SessionDep, settings: SettingsDep, user: UserDep, task_id: int
) -> physics.DateSummary:
    """A few indexed reads, on the event loop like the dependencies' own lookups."""
    task = owned_task(session, user, task_id)
    rnd, date = _round_and_date(task, settings.database_url)
    return physics.date_summary(rnd, date, url=settings.database_url)


@router.get(
    "/api/tasks/{task_id}/summary",
    response_model=SummaryResponse,
    responses={200: SUMMARY_EXAMPLE, **TASK_NOT_FOUND, **NO_DATE},
)
async def task_summary(
    task_id: int, session: SessionDep, settings: SettingsDep, user: UserDep
) -> SummaryResponse:
    """The task's date: IST per run, 50 Hz windows, ETS cuts, anomalies, runs to the database."""
    return SummaryResponse(task_id=task_id, summary=_summary(session, settings, user, task_id))


@router.get(
    "/api/tasks/{task_id}/summary.png",
    response_class=Response,
    responses={**PNG, **TASK_NOT_FOUND, **NO_DATE},
)
async def task_summary_png(
    task_id: int, session: SessionDep, settings: SettingsDep, user: UserDep
) -> Response:
    """The same summary drawn: IST, windows and cuts per run."""
    from store import physics_plots

    summary = _summary(session, settings, user, task_id)
    png = await run_in_threadpool(physics_plots.summary_png, summary)
    return Response(png, media_type="image/png")


@router.get(
    "/api/rounds/{round}/trends", response_model=TrendsResponse, responses={200: TRENDS_EXAMPLE}
)
async def round_trends(
    round: RoundPath, settings: SettingsDep, user: UserDep, highlight: HighlightQuery = None
) -> TrendsResponse:
    """Windows and cuts per run across the round's dates (for plots of drift and bad runs)."""
    trends = physics.round_trends(round, highlight, settings.database_url)
    return TrendsResponse(trends=trends)


@router.get("/api/rounds/{round}/trends.png", response_class=Response, responses=PNG)
async def round_trends_png(
    round: RoundPath, settings: SettingsDep, user: UserDep, highlight: HighlightQuery = None
) -> Response:
    """The trends drawn: windows and cuts against the run number, one date highlighted."""
    from store import physics_plots

    trends = physics.round_trends(round, highlight, settings.database_url)
    png = await run_in_threadpool(physics_plots.trends_png, trends)
    return Response(png, media_type="image/png")
