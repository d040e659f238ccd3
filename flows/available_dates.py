"""Step 0 as a flow: which dates of a round exist in DATA and which are not processed yet.

Deployment entrypoint: ``flows/available_dates.py:available_dates``.
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_table_artifact
from prefect.states import Cancelled

from flows import recording, transcript
from flows.definitions import StepDefinition, load
from flows.logs import attach_topup_loggers
from flows.operator import OperatorAbort
from flows.policy import task_options
from flows.procedure import Outcome, Procedure, RunOptions, check_tasks
from flows.recording import RunRecord, artifact_key
from flows.registry import step_task
from flows.topup_flow import topup_flow
from flows.topup_standard import checked_parameters, current_run_id, flow_defaults
from steps.results import StepResult
from store import dates as date_store

FLOW_NAME = "available-dates"


def list_dates(
    round: str, site: str, include_processed: bool = True, sort_order: str = "asc"
) -> StepResult:
    """Run the step-0 task with the definition's retries (shared with the backfill)."""
    definition = load(FLOW_NAME)
    step = definition.step("step0")
    task = step_task("step0").with_options(**task_options(step, None, "step0"))
    result: StepResult = task(
        round=round, site=site, include_processed=include_processed, sort_order=sort_order
    )
    return with_failed_dates(result, round)


def with_failed_dates(result: StepResult, round: str) -> StepResult:
    """A date whose last run failed or was aborted is ``failed``, not processed.

    The remote listing only knows that ``INJ/{date}`` exists (the legacy meaning of
    processed); the store knows how the date's last run ended. A failed date goes back to
    the unprocessed ones, so a backfill runs it again, and is listed in ``failed_dates``.
    """
    data = dict(result.data)
    failed = sorted(
        r.date
        for r in date_store.date_records(round)
        if r.status == "failed" and r.date in set(data.get("all_dates") or [])
    )
    data["failed_dates"] = failed
    if "processed_dates" in data:
        reverse = data.get("sort_order") == "desc"
        data["processed_dates"] = [d for d in data["processed_dates"] if d not in failed]
        data["unprocessed_dates"] = sorted(
            set(data.get("unprocessed_dates") or []) | set(failed), reverse=reverse
        )
        data["processed_count"] = len(data["processed_dates"])
        data["unprocessed_count"] = len(data["unprocessed_dates"])
    return result.model_copy(update={"data": data})


class DatesProcedure(Procedure):
    """The definition's steps; step 0 also gets the listing options of the flow."""

    def __init__(self, *args: Any, listing: dict[str, Any], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.listing = listing
        self.step0: StepResult | None = None

    def kwargs(self, step: StepDefinition, task_name: str, extra: dict[str, Any]) -> dict[str, Any]:
        return super().kwargs(step, task_name, {**self.listing, **extra})

    def _record(self, step: StepDefinition, task_name: str, result: StepResult, outcome: str):
        if task_name == "step0":  # the store's view of failed dates, recorded with the step
            result = with_failed_dates(result, self.o.round)
        super()._record(step, task_name, result, outcome)

    def call(
        self, step: StepDefinition, task_name: str, extra: dict[str, Any]
    ) -> tuple[Outcome, StepResult | None]:
        outcome, result = super().call(step, task_name, extra)
        if task_name == "step0" and result is not None:
            self.step0 = with_failed_dates(result, self.o.round)
        return outcome, result

    def step0_data(self) -> dict[str, Any]:
        return dict(self.step0.data) if self.step0 else {}

    @property
    def step0_message(self) -> str:
        return self.step0.message if self.step0 else "step 0 not run (start_at_step)"


# run name: round18-available-dates-1.0.0 (or the legacy definition's name and version)
@topup_flow(FLOW_NAME)
def available_dates(
    round: str = "round18",
    site: str = "default",
    include_processed: bool = True,
    sort_order: str = "asc",
    workflow_version: str | None = None,
    start_at_step: str | None = None,
    operator_timeout_hours: float = 24,
    workflow: str = FLOW_NAME,
) -> dict[str, Any]:
    """The dates of ``round`` in DATA, with the unprocessed ones (no ``INJ/{date}`` yet).

    Runs the steps of the definition (``available-dates``: step 0 only; the legacy
    ``get-available-dates``: step 0, a review pause, a placeholder step 1); every step result
    goes to the store, so the facade shows step 0's dates as its ``step_result_json``.
    """
    attach_topup_loggers()
    definition = load(workflow, workflow_version)
    if definition.flow != FLOW_NAME:
        raise ValueError(f"{definition.tag} is run by the {definition.flow!r} flow")
    check_tasks(definition)
    given = {
        "round": round,
        "site": site,
        "include_processed": include_processed,
        "sort_order": sort_order,
        "start_at_step": start_at_step,
        "operator_timeout_hours": operator_timeout_hours,
    }
    p = checked_parameters(definition, given, flow_defaults(available_dates.fn))
    run_key = current_run_id()
    transcript.start(p["site"], run_key)
    rec = RunRecord(flow_run_id=run_key, definition=definition, round=p["round"])
    recording.announce(
        rec, FLOW_NAME, {**p, "workflow": definition.name, "workflow_version": definition.version}
    )
    options = RunOptions(
        date=None,
        round=p["round"],
        site=p["site"],
        run_key=run_key,
        operator_timeout_hours=p.get("operator_timeout_hours", operator_timeout_hours),
    )
    listing = {"include_processed": p["include_processed"], "sort_order": p["sort_order"]}
    procedure = DatesProcedure(definition, options, rec, listing=listing)
    try:
        summary = procedure.run(p.get("start_at_step"))
    except OperatorAbort as exc:
        # a person stopped the run: Cancelled with who and why, not a failure
        recording.finish(rec, "aborted", str(exc))
        return Cancelled(  # type: ignore[return-value]
            message=str(exc), data={"round": p["round"], "status": "aborted"}
        )
    except Exception as exc:
        recording.finish(rec, "failed", f"{type(exc).__name__}: {exc}")
        raise
    recording.finish(rec, summary["status"])
    data = procedure.step0_data()
    unprocessed = set(data.get("unprocessed_dates") or [])
    processed = set(data.get("processed_dates") or [])
    failed = set(data.get("failed_dates") or [])
    if data:
        create_table_artifact(
            table=[
                {
                    "date": d,
                    "status": "failed"
                    if d in failed
                    else (
                        "unprocessed"
                        if d in unprocessed
                        else ("processed" if d in processed else "?")
                    ),
                }
                for d in data.get("all_dates", [])
            ],
            key=artifact_key(p["round"], "available-dates"),
            description=f"{len(unprocessed)} of {len(data.get('all_dates', []))} dates unprocessed",
        )
    return {
        "workflow": definition.name,
        "workflow_version": definition.version,
        "round": p["round"],
        "message": procedure.step0_message,
        **data,
    }
