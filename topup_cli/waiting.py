"""The runs that wait for an operator, for ``topup status``: which date, which decision.

Why a separate read: ``topup status`` is about the stack's processes; an operator who looks
at it also wants to know what is waiting for them, named by round, date and decision
(``step 7 reset approval``), not by a run id.
"""

from __future__ import annotations

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import BaseModel

from flows.naming import WAITS_LABEL, waiting_for


class WaitingRun(BaseModel):
    """One paused (or suspended) flow run."""

    id: str
    name: str
    round: str | None = None
    date: str | None = None
    waits_for: str


def decision_of(run: FlowRun) -> str:
    """The label the flow set before pausing, else what the pause key says."""
    label = (run.labels or {}).get(WAITS_LABEL)
    if label:
        return str(label)
    key = run.state.state_details.pause_key if run.state is not None else None
    return waiting_for(key) if key else "a decision (paused from outside)"


def waiting_runs(api_url: str, limit: int = 50) -> list[WaitingRun]:
    """The paused flow runs of the stack at ``api_url``, oldest first."""
    with SyncPrefectClient(api=api_url) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=limit,
        )
    out = []
    for run in runs:
        params = run.parameters or {}
        out.append(
            WaitingRun(
                id=str(run.id),
                name=run.name,
                round=str(params["round"]) if params.get("round") else None,
                date=str(params["date"]) if params.get("date") else None,
                waits_for=decision_of(run),
            )
        )
    return out
