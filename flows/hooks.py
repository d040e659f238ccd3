"""State hooks: remove what a cancelled or crashed flow run left running on the remote site.

``steps.cleanup.cancel_run`` kills the run's detached commands and ``hep_rm``s its batch jobs
(keyed by ``run_key`` = the flow-run id). A backfill also cleans its unfinished child runs.
Hooks never raise: a failed cleanup is logged for an operator, the state stays as it is.
"""

from __future__ import annotations

from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun, State
from prefect.logging.loggers import flow_run_logger

from flows.logs import logs_of_run
from steps.cleanup import cancel_run
from steps.session import open_site
from store import dates as date_store
from store import ledger, repository


def _cleanup(flow_run: FlowRun, run_key: str, site: str, status: str) -> dict[str, Any] | None:
    log = flow_run_logger(flow_run)
    try:
        with logs_of_run(run_key):
            done = cancel_run(open_site(site), run_key)
    except Exception as exc:  # never let a hook fail the state transition
        log.error("remote cleanup of %s failed: %s: %s", run_key, type(exc).__name__, exc)
        return None
    log.warning(
        "remote cleanup of %s: killed %s, removed jobs %s",
        run_key,
        done["detached_killed"] or "nothing",
        done["job_ids"] or "none",
    )
    try:
        repository.finish_workflow_run(run_key, status, f"{status}; remote cleanup: {done}")
        settle_submissions(run_key, done.get("submissions") or [])
        params = flow_run.parameters or {}
        if params.get("date") and str(params.get("round") or ""):
            date_store.mark_date(
                str(params["round"]), str(params["date"]), "failed", message=f"run {status}"
            )
    except Exception as exc:
        log.error("could not record the %s state: %s", status, exc)
    return done


def settle_submissions(run_key: str, ended: list[dict[str, Any]]) -> None:
    """Record in the ledger how the submissions the cleanup waited for ended.

    One with no exit status (still running, or lost) stays ``unknown`` for a person.
    """
    by_key = {r.remote_key: r for r in ledger.submissions(flow_run_id=run_key)}
    for end in ended:
        row = by_key.get(str(end.get("key")))
        if row is None or row.id is None or end.get("exit_code") is None or end.get("lost"):
            continue
        outcome = "submitted" if end["exit_code"] == 0 else "failed"
        ledger.settle(
            row.id, outcome, exit_status=end["exit_code"], output=str(end.get("output", ""))
        )


def cleanup_remote(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """``on_cancellation`` / ``on_crashed`` hook of the flows that touch the remote site."""
    site = str((flow_run.parameters or {}).get("site") or "default")
    status = "cancelled" if state.is_cancelling() or state.is_cancelled() else "crashed"
    _cleanup(flow_run, str(flow_run.id), site, status)


__all__ = ["cleanup_children", "cleanup_remote", "settle_submissions"]


def cleanup_children(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """Backfill hook: clean every child run that has not finished."""
    status = "cancelled" if state.is_cancelling() or state.is_cancelled() else "crashed"
    try:
        with get_client(sync_client=True) as client:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id])
                )
            )
    except Exception as exc:
        flow_run_logger(flow_run).error("cannot list the child runs: %s", exc)
        return
    for child in children:
        if child.state is None or not child.state.is_final() or child.state.is_cancelling():
            site = str((child.parameters or {}).get("site") or "default")
            _cleanup(flow_run, str(child.id), site, status)
