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
from typing import Any

from prefect import flow
from prefect.context import FlowRunContext
from prefect.logging import get_run_logger

from flows import recording, transcript
from flows.definitions import WorkflowDefinition, load
from flows.hooks import cleanup_remote
from flows.logs import attach_topup_loggers
from flows.operator import OperatorAbort
from flows.procedure import Procedure, RunOptions, check_tasks
from flows.recording import RunRecord
from flows.round_slot import round_slot

FLOW_NAME = "topup-standard"


def current_run_id() -> str:
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        raise RuntimeError("not inside a flow run")
    return str(ctx.flow_run.id)


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


@flow(
    name=FLOW_NAME,
    persist_result=True,
    on_cancellation=[cleanup_remote],
    on_crashed=[cleanup_remote],
)
def topup_standard(
    date: str,
    round: str = "round18",
    site: str = "default",
    workflow_version: str = "1.0.0",
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
    try:
        with round_slot(options.round, run_key):
            summary = Procedure(definition, options, rec).run(p.get("start_at_step"))
    except OperatorAbort as exc:
        recording.finish(rec, "aborted", str(exc))
        raise
    except Exception as exc:
        recording.finish(rec, "failed", f"{type(exc).__name__}: {exc}")
        raise
    recording.finish(rec, summary["status"])
    return {
        "workflow": definition.name,
        "workflow_version": definition.version,
        "date": options.date,
        "round": options.round,
        "flow_run_id": run_key,
        **summary,
    }
