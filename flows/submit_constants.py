"""Submitting a round's constants to the offline database: step 8 as its own operation.

Reads like the procedure: check the parameters, take the round's slot (the submission
rewrites the round's working files), then step 8 (``flows.submission``): the run range and
its dates, earlier attempts settled, per part the dry run, the approval and the real
submission, each attempt in the ledger (``store.ledger``). In the original procedure step 8
is manual only; here it never runs as part of a date's run (``topup-standard`` 1.2.0 ends
after the reset).

Deployment entrypoint: ``flows/submit_constants.py:submit_constants``.
"""

from __future__ import annotations

from typing import Any

from prefect.logging import get_run_logger
from prefect.states import Cancelled, Completed

from flows import recording, transcript
from flows.definitions import load
from flows.hooks import cleanup_remote
from flows.logs import attach_topup_loggers
from flows.operator import OperatorAbort
from flows.procedure import Outcome, Procedure, RunOptions, check_tasks
from flows.recording import RunRecord
from flows.round_slot import round_slot
from flows.topup_flow import topup_flow
from flows.topup_standard import current_run_id
from store import ledger

FLOW_NAME = "submit-constants"


# run name: round18-submit-constants (with the run range when one is given)
@topup_flow(FLOW_NAME, on_stop=cleanup_remote)
def submit_constants(
    round: str = "round18",
    site: str = "default",
    run_from: int | None = None,
    run_to: int | None = None,
    approve_db_submit: bool = False,
    approved_by: str | None = None,
    operator_timeout_hours: float = 24,
    workflow_version: str | None = None,
) -> Any:
    """Submit the constants of ``round``'s verified dates (8.1 – 8.3), each after approval."""
    attach_topup_loggers()
    log = get_run_logger()
    definition = load(FLOW_NAME, workflow_version)
    check_tasks(definition)
    p = definition.validate_parameters(
        {
            "round": round,
            "site": site,
            "run_from": run_from,
            "run_to": run_to,
            "approve_db_submit": approve_db_submit,
            "approved_by": approved_by,
            "operator_timeout_hours": operator_timeout_hours,
        }
    )
    run_key = current_run_id()
    transcript.start(p["site"], run_key)
    rec = RunRecord(flow_run_id=run_key, definition=definition, round=p["round"])
    recording.announce(rec, FLOW_NAME, {**p, "workflow_version": definition.version})
    options = RunOptions(
        date=None,
        round=p["round"],
        site=p["site"],
        run_key=run_key,
        approve_db_submit=p["approve_db_submit"],
        approved_by=p.get("approved_by"),
        operator_timeout_hours=p["operator_timeout_hours"],
        run_from=p.get("run_from"),
        run_to=p.get("run_to"),
    )
    ident = {"workflow": definition.name, "workflow_version": definition.version, **p}
    try:
        with round_slot(options.round, run_key):
            summary = Procedure(definition, options, rec).run()
    except OperatorAbort as exc:
        recording.finish(rec, "aborted", str(exc))
        return Cancelled(message=str(exc), data={**ident, "status": "aborted"})
    except BaseException as exc:
        recording.finish(rec, "failed", f"{type(exc).__name__}: {exc}")
        raise
    rows = [r.model_dump(mode="json") for r in ledger.submissions(flow_run_id=run_key)]
    outcomes = {r["part"]: r["outcome"] for r in rows}
    message = (
        "submitted: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        if outcomes
        else "nothing submitted"
    )
    status = summary["steps"].get("step8")
    if status != Outcome.DONE:
        message = f"step 8 ended {status}; {message}"
    log.info("%s", message)
    recording.finish(rec, "completed", message)
    return Completed(message=message, data={**ident, **summary, "ledger": rows})
