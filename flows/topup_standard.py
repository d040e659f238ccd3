"""The standard top-up validation flow: the steps of a workflow definition for one date.

Reads like the procedure: check the parameters against the definition, record which
definition version runs, take the round's slot (one date per round at a time), run the steps
(retries, recording, error policy, pauses and approvals in ``flows.procedure``), and record
how it ended. ``run_key`` = the flow-run id: it keys the remote detached commands, so a
resumed or retried run re-attaches instead of submitting again, and completed steps come back
``Cached`` (results are persisted; the default cache key includes the flow-run id).

Deployment entrypoint: ``flows/topup_standard.py:topup_standard``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext
from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed, Failed

from flows import recording, transcript
from flows.definitions import WorkflowDefinition, load
from flows.hooks import cleanup_remote
from flows.logs import attach_topup_loggers
from flows.operator import OperatorAbort
from flows.procedure import Procedure, RunOptions, check_tasks
from flows.recording import RunRecord
from flows.round_slot import round_slot
from flows.topup_flow import topup_flow
from flows.verification import verify_date
from steps.cleanup import cancel_run
from steps.session import open_site
from store import dates as date_store
from store import repository

FLOW_NAME = "topup-standard"


def current_run_id() -> str:
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("not inside a flow run")
    return str(ctx.flow_run.id)


def current_run_name() -> str:
    """The flow run's name: its reports folder is named after it."""
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("not inside a flow run")
    return ctx.flow_run.name


def flow_defaults(fn: Any) -> dict[str, Any]:
    return {
        name: param.default
        for name, param in inspect.signature(fn).parameters.items()
        if param.default is not inspect.Parameter.empty
    }


def checked_parameters(
    definition: WorkflowDefinition, values: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """Validate the flow's arguments against the definition.

    Arguments the definition does not declare must keep the flow's defaults (a subset
    workflow such as ``topup-standard-steps`` has no approvals to pre-set).
    """
    for name, value in values.items():
        if name not in definition.parameters and value != defaults.get(name):
            raise ValueError(f"parameter {name!r} is not part of workflow {definition.tag}")
    return definition.validate_parameters(
        {k: v for k, v in values.items() if k in definition.parameters}
    )


# run name: round18-250624-topup-standard-1.2.0, what the run is, from its parameters
@topup_flow(FLOW_NAME, on_stop=cleanup_remote)
def topup_standard(
    date: str,
    round: str = "round18",
    site: str = "default",
    workflow_version: str | None = None,
    max_wait_minutes: float | None = None,
    poll_seconds: float | None = None,
    submit_job: bool = True,
    check_ist: bool = True,
    start_at_step: str | None = None,
    approve_reset: bool = False,
    approve_db_submit: bool = False,
    approved_by: str | None = None,
    operator_timeout_hours: float = 24,
    workflow: str = FLOW_NAME,
) -> dict[str, Any]:
    """Validate one data-taking date: the definition's steps (1.1 – 8 for topup-standard)."""
    attach_topup_loggers()
    log = get_run_logger()
    definition = load(workflow, workflow_version)
    if definition.flow != FLOW_NAME:
        raise ValueError(f"{definition.tag} is run by the {definition.flow!r} flow")
    check_tasks(definition)
    given = {
        "date": date,
        "round": round,
        "site": site,
        "max_wait_minutes": max_wait_minutes,
        "poll_seconds": poll_seconds,
        "submit_job": submit_job,
        "check_ist": check_ist,
        "start_at_step": start_at_step,
        "approve_reset": approve_reset,
        "approve_db_submit": approve_db_submit,
        "approved_by": approved_by,
        "operator_timeout_hours": operator_timeout_hours,
    }
    p = checked_parameters(definition, given, flow_defaults(topup_standard.fn))
    run_key = current_run_id()
    transcript.start(p["site"], run_key)
    rec = RunRecord(flow_run_id=run_key, definition=definition, round=p["round"], date=p["date"])
    recording.announce(
        rec, FLOW_NAME, {**p, "workflow": definition.name, "workflow_version": definition.version}
    )
    try:  # the reports folder <downloads>/<round>/<date>/<run name>/, before any step
        recording.claim_downloads(
            rec, Path(open_site(p["site"]).settings.downloads_dir), current_run_name()
        )
    except OSError as exc:  # the downloading steps then fail with their own error codes
        log.warning("no reports folder for this run: %s", type(exc).__name__)
    options = RunOptions(
        date=p["date"],
        round=p["round"],
        site=p["site"],
        run_key=run_key,
        max_wait_minutes=p.get("max_wait_minutes"),
        poll_seconds=p.get("poll_seconds"),
        submit_job=p.get("submit_job", True),
        check_ist=p.get("check_ist", True),
        approve_reset=p.get("approve_reset", False),
        approve_db_submit=p.get("approve_db_submit", False),
        approved_by=p.get("approved_by"),
        operator_timeout_hours=p.get("operator_timeout_hours", 24),
    )
    log.info("running %s for %s of %s (run_key %s)", definition.tag, date, round, run_key)
    ident = {
        "workflow": definition.name,
        "workflow_version": definition.version,
        "date": options.date,
        "round": options.round,
        "flow_run_id": run_key,
    }
    date_store.mark_date(
        options.round, p["date"], "running", flow_run_id=run_key, workflow=definition.tag[9:]
    )
    try:
        with round_slot(options.round, run_key):
            summary = Procedure(definition, options, rec).run(p.get("start_at_step"))
    except OperatorAbort as exc:
        # a person stopped the run: Cancelled with who and why, not a failure of the software
        message = str(exc)
        date_store.mark_date(options.round, p["date"], "failed", message=message)
        recording.finish(rec, "aborted", message)
        stop_remote_work(options.site, run_key)
        return Cancelled(message=message, data={**ident, "status": "aborted", "reason": message})
    except BaseException as exc:
        date_store.mark_date(
            options.round, p["date"], "failed", message=f"{type(exc).__name__}: {exc}"
        )
        recording.finish(rec, "failed", f"{type(exc).__name__}: {exc}")
        raise
    result = {**ident, **summary}
    end = end_state(definition, options, summary)
    recording.finish(rec, end.status, end.message)
    if end.status == "unverified":
        log.warning("run ends Unverified: %s", end.message)
        return Failed(name="Unverified", message=end.message, data=result)
    return Completed(message=end.message, data=result)


@dataclass(frozen=True)
class EndState:
    status: str  # completed / exited / unverified
    message: str


def end_state(definition: WorkflowDefinition, o: RunOptions, summary: dict[str, Any]) -> EndState:
    """How the run really ended: every required output verified, or what is missing.

    The run is checked against its own definition (a subset workflow against its steps);
    the date's record is checked against the full standard procedure, so only a date whose
    every step verified (or whose gaps a person accepted) counts as verified for step 0 and
    for the submission.
    """
    assert o.date is not None
    own = verify_date(definition, round=o.round, date=o.date, flow_run_id=o.run_key)
    accepted_by = [
        d.decided_by
        for d in repository.decisions(o.run_key)
        if d.kind == "gate" and d.decision == "accept"
    ]
    full = definition if any(s.approval == "reset" for s in definition.steps) else load(FLOW_NAME)
    date_check = (
        own
        if full is definition
        else verify_date(full, round=o.round, date=o.date, flow_run_id=o.run_key)
    )
    reset_done = summary["steps"].get("step7") == "success"
    if date_check.ok or accepted_by:
        date_store.mark_date(
            o.round,
            o.date,
            "verified",
            runs=date_check.runs,
            registered_runs=date_check.registered_runs,
            missing=date_check.missing,
            reset_done=reset_done or None,
            message=(f"accepted by {accepted_by[-1]}" if date_check.missing else "verified"),
        )
    else:
        date_store.mark_date(
            o.round,
            o.date,
            "unverified",
            runs=date_check.runs,
            registered_runs=date_check.registered_runs,
            missing=date_check.missing,
            message="; ".join(date_check.missing)[:4000],
        )
    if summary["status"] == "exited":
        return EndState("exited", "ended early (exit code); the date is not verified")
    if own.missing and not accepted_by:
        return EndState("unverified", "missing: " + "; ".join(own.missing))
    if own.missing:
        return EndState(
            "completed",
            f"completed; missing items accepted by {accepted_by[-1]}: " + "; ".join(own.missing),
        )
    return EndState("completed", "completed; every required output verified")


def stop_remote_work(site: str, run_key: str) -> None:
    """After an abort: remove the run's batch jobs and detached commands (never a submission)."""
    try:
        cancel_run(open_site(site), run_key)
    except Exception as exc:  # the abort stands; the leftovers are logged for a person
        get_run_logger().error("remote cleanup after the abort failed: %s", exc)
