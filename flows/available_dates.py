"""Step 0 as a flow: which dates of a round exist in DATA and which are not processed yet.

Deployment entrypoint: ``flows/available_dates.py:available_dates``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows import transcript
from flows.definitions import load
from flows.logs import attach_topup_loggers
from flows.policy import task_options
from flows.recording import artifact_key
from flows.registry import step_task
from steps.results import StepResult
from store import dates as date_store

FLOW_NAME = "available-dates"


def list_dates(
    round: str, site: str, include_processed: bool = True, sort_order: str = "asc"
) -> StepResult:
    """Run the step-0 task with the definition's retries (shared with the backfill)."""
    definition = load(FLOW_NAME)
    step = definition.step("step0")
    task = step_task("step0").with_options(**task_options(step, None))
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


@flow(name=FLOW_NAME, persist_result=True)
def available_dates(
    round: str = "round18",
    site: str = "default",
    include_processed: bool = True,
    sort_order: str = "asc",
    workflow_version: str | None = None,
) -> dict[str, Any]:
    """The dates of ``round`` in DATA, with the unprocessed ones (no ``INJ/{date}`` yet)."""
    attach_topup_loggers()
    definition = load(FLOW_NAME, workflow_version)
    p = definition.validate_parameters(
        {
            "round": round,
            "site": site,
            "include_processed": include_processed,
            "sort_order": sort_order,
        }
    )
    transcript.start(p["site"])
    result = list_dates(p["round"], p["site"], p["include_processed"], p["sort_order"])
    data = result.data
    unprocessed = set(data.get("unprocessed_dates") or [])
    processed = set(data.get("processed_dates") or [])
    failed = set(data.get("failed_dates") or [])
    create_table_artifact(
        table=[
            {
                "date": d,
                "status": "failed"
                if d in failed
                else (
                    "unprocessed" if d in unprocessed else ("processed" if d in processed else "?")
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
        "message": result.message,
        **data,
    }
