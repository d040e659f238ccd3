"""Backfill: every unprocessed date of a round, oldest first, one after another.

Each date runs the standard workflow as a subflow (its own flow run, tag, outputs, round
slot). Dates of a round share cumulative remote files, so the backfill stops at the first date
that does not complete: the later ones would build on a half-processed state. Dates listed in
DATA without any raw file are skipped (no step accepts them).

Deployment entrypoint: ``flows/backfill.py:backfill``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client, tags
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from prefect.states import Cancelled, State

from flows import recording
from flows.available_dates import list_dates
from flows.definitions import load
from flows.hooks import cleanup_children
from flows.logs import attach_topup_loggers
from flows.naming import date_span, flow_run_name
from flows.recording import RunRecord
from flows.submit_constants import submit_constants
from flows.topup_flow import topup_flow
from flows.topup_standard import current_run_id, topup_standard
from store import dates as date_store

FLOW_NAME = "backfill"
# The tag naming whom a run was started for (the facade shows it as that user's task).
USER_TAG = "facade-user:"


class BackfillStopped(Exception):
    """A date did not complete; the later dates were not started."""


def choose_dates(
    unprocessed: list[str], without_data: list[str], only: str | None, max_dates: int | None
) -> list[str]:
    """Oldest first; only the requested subset; never a date without raw files."""
    dates = sorted(d for d in unprocessed if d not in set(without_data))
    if only:
        wanted = {d.strip() for d in only.split(",") if d.strip()}
        unknown = wanted - set(unprocessed)
        if unknown:
            raise ValueError(f"dates {sorted(unknown)} are not unprocessed dates of the round")
        dates = [d for d in dates if d in wanted]
    return dates[:max_dates] if max_dates else dates


def rename(run_key: str, p: dict[str, Any], dates: list[str]) -> None:
    """Name the run by the dates it will process, once step 0 chose them."""
    if not dates:
        return
    name = flow_run_name(FLOW_NAME, {**p, "dates": ",".join(date_span(dates))})
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_name(UUID(run_key), name)
    except Exception as exc:  # a name is a convenience: the backfill goes on
        get_run_logger().warning("could not rename the run to %s: %s", name, exc)


def aborted(state: State[Any]) -> bool:
    """A child run an operator aborted (it ends Cancelled with "aborted by <who>")."""
    return state.is_cancelled() and (state.message or "").startswith("aborted by")


# run name: round18-backfill (-<first>-<last> when dates are given; renamed once chosen)
@topup_flow(FLOW_NAME, on_stop=cleanup_children)
def backfill(
    round: str = "round18",
    site: str = "default",
    workflow: str = "topup-standard",
    workflow_version: str | None = None,
    dates: str | None = None,
    max_dates: int | None = None,
    max_wait_minutes: float | None = None,
    poll_seconds: float | None = None,
    submit_job: bool = True,
    check_ist: bool = True,
    approve_reset: bool = False,
    approved_by: str | None = None,
    operator_timeout_hours: float = 24,
    propose_submission: bool = True,
) -> dict[str, Any]:
    """Process every unprocessed date of ``round`` with ``workflow@workflow_version``."""
    attach_topup_loggers()
    log = get_run_logger()
    definition = load(FLOW_NAME)
    p = definition.validate_parameters(
        {
            "round": round,
            "site": site,
            "workflow": workflow,
            "workflow_version": workflow_version,
            "dates": dates,
            "max_dates": max_dates,
            "max_wait_minutes": max_wait_minutes,
            "poll_seconds": poll_seconds,
            "submit_job": submit_job,
            "check_ist": check_ist,
            "approve_reset": approve_reset,
            "approved_by": approved_by,
            "operator_timeout_hours": operator_timeout_hours,
            "propose_submission": propose_submission,
        }
    )
    per_date = load(p["workflow"], p["workflow_version"])  # fails early on a bad version
    run_key = current_run_id()
    rec = RunRecord(flow_run_id=run_key, definition=definition, round=p["round"])
    recording.announce(rec, FLOW_NAME, p)

    listing = list_dates(p["round"], p["site"])
    todo = choose_dates(
        listing.data.get("unprocessed_dates") or [],
        listing.data.get("dates_without_data") or [],
        p["dates"],
        p["max_dates"],
    )
    log.info("backfill of %s with %s: %s", p["round"], per_date.tag, todo or "nothing to do")
    rename(run_key, p, todo)
    common = {
        k: p[k]
        for k in (
            "round",
            "site",
            "max_wait_minutes",
            "poll_seconds",
            "submit_job",
            "check_ist",
            "approve_reset",
            "approved_by",
            "operator_timeout_hours",
        )
        if k in per_date.parameters
    }
    ctx = FlowRunContext.get()
    own_tags = list(ctx.flow_run.tags) if ctx is not None and ctx.flow_run is not None else []
    owner_tags = [t for t in own_tags if t.startswith(USER_TAG)]
    done: list[dict[str, Any]] = []
    for i, date in enumerate(todo):
        with tags(*owner_tags):  # each date's run belongs to whom the backfill does
            state = topup_standard(
                date=date,
                workflow=per_date.name,
                workflow_version=per_date.version,
                return_state=True,
                **common,
            )
        done.append({"date": date, "state": state.type.value, "message": state.message})
        if not state.is_completed():
            rest = todo[i + 1 :]
            message = f"date {date} ended {state.type.value}: {state.message}; not started: {rest}"
            if aborted(state):  # a person's decision, not a failure: the backfill ends with it
                message = f"date {date} {state.message}; not started: {rest}"
                recording.finish(rec, "aborted", message)
                return Cancelled(  # type: ignore[return-value]
                    message=message, data={"round": p["round"], "runs": done}
                )
            recording.finish(rec, "failed", message)
            raise BackfillStopped(message)
    proposal = propose(p, per_date.steps, p["propose_submission"] and bool(done))
    recording.finish(rec, "completed", proposal["message"])
    return {
        "round": p["round"],
        "workflow": per_date.name,
        "workflow_version": per_date.version,
        "dates": [d["date"] for d in done],
        "runs": done,
        "submission": proposal,
    }


def propose(p: dict[str, Any], per_date_steps: list[Any], wanted: bool) -> dict[str, Any]:
    """One database submission for the whole round, once every date is verified.

    Never pre-approved: the ``submit-constants`` run it starts waits for an operator's
    approval of each part (they may skip). Not proposed while any date of the round is
    failed, unverified or still running; the message names them.
    """
    log = get_run_logger()
    if any(s.kind == "database" for s in per_date_steps):
        return {"proposed": False, "message": "each date ran its own step 8 (old definition)"}
    if not wanted:
        return {"proposed": False, "message": "no submission proposed"}
    blocking = [
        f"{r.date} ({r.status})"
        for r in date_store.date_records(p["round"])
        if r.status in date_store.NOT_SUBMITTABLE
    ]
    if blocking:
        message = f"no submission proposed: dates not verified: {', '.join(blocking)}"
        log.warning(message)
        return {"proposed": False, "message": message}
    state = submit_constants(
        round=p["round"],
        site=p["site"],
        operator_timeout_hours=p["operator_timeout_hours"],
        return_state=True,
    )
    return {
        "proposed": True,
        "state": state.type.value,
        "message": f"submission proposed: {state.type.value}: {state.message or ''}".strip(),
    }
