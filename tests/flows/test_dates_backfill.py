"""The available-dates and backfill flows, and the cancellation hook's remote cleanup."""

from __future__ import annotations

from typing import Any

from prefect import get_client, tags
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.flow_runs import resume_flow_run
from prefect.states import Cancelling

from flows.available_dates import available_dates
from flows.backfill import backfill
from flows.hooks import cleanup_remote
from flows.naming import WAITS_LABEL
from flows.topup_standard import topup_standard
from store import repository
from tests.flows.conftest import (
    FAST,
    Driver,
    FlowEnv,
    poll,
    read_run,
    runs_tagged,
    task_runs,
    unique_tag,
    wait_paused,
)


def test_available_dates_lists_unprocessed_dates(flow_env: FlowEnv) -> None:
    out = available_dates(round="round18")
    assert out["workflow"] == "available-dates"
    assert out["unprocessed_dates"] == ["250624", "250625", "250626", "250627"]
    assert out["processed_dates"] == ["250101"]
    assert out["dates_without_data"] == ["250627"]


def test_backfill_runs_every_unprocessed_date_oldest_first(flow_env: FlowEnv) -> None:
    state = backfill(
        round="round17",
        workflow="topup-standard-steps",
        workflow_version="1.0.2",
        **FAST,
        return_state=True,
    )
    assert state.is_completed(), state.message
    out = state.result()
    assert out["dates"] == ["240501", "240502"]
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(
                    any_=[state.state_details.flow_run_id]
                )
            )
        )
    children.sort(key=lambda r: r.start_time)  # type: ignore[arg-type, return-value]
    assert [r.parameters["date"] for r in children] == ["240501", "240502"]
    assert all(r.state_name == "Completed" for r in children)
    assert children[0].end_time <= children[1].start_time  # type: ignore[operator]
    # named by what they are: the backfill by its round and dates, each child by its date;
    # one round: and one date: tag each
    assert read_run(state.state_details.flow_run_id).name == "round17-backfill-240501-240502"
    assert [r.name for r in children] == [
        f"round17-{d}-topup-standard-steps-1.0.2" for d in ("240501", "240502")
    ]
    for child in children:
        assert [t for t in child.tags if t.startswith(("round:", "date:"))] == [
            "round:round17",
            f"date:{child.parameters['date']}",
        ]
        assert "workflow:topup-standard-steps@1.0.2" in child.tags
        wf = repository.workflow_run(str(child.id))
        assert wf is not None and wf.round == "round17" and wf.status == "completed"
    assert available_dates(round="round17")["unprocessed_dates"] == []
    # nothing left to do: the backfill completes without starting a subflow
    assert (
        backfill(
            round="round17", workflow="topup-standard-steps", workflow_version="1.0.2", **FAST
        )["dates"]
        == []
    )


def test_an_operators_abort_ends_a_dates_run_and_a_backfill_cancelled(flow_env: FlowEnv) -> None:
    """Aborting is a person's decision, not a failure: Cancelled, with who and why."""
    tag = unique_tag()

    def abort_review() -> None:
        run = wait_paused(tag, key="step0-review")
        assert run.name == "round18-get-available-dates-1.0.3"
        assert (run.labels or {}).get(WAITS_LABEL) == "step 0 review"
        resume_flow_run(run.id, run_input={"action": "abort", "name": "frank", "note": "wrong"})

    with Driver(abort_review) as driver, tags(tag):
        state = available_dates(round="round18", workflow="get-available-dates", return_state=True)
    driver.check()
    assert state.is_cancelled(), state.type
    assert (state.message or "").startswith("aborted by frank") and "wrong" in state.message

    odd = flow_env.sim.runs("round17", "240501")[0]
    flow_env.sim.set_faults(ist={odd: 14000000})
    tag = unique_tag()

    def abort_ist() -> None:
        run = wait_paused(tag, key="step1-3-ist-1")
        assert (run.labels or {}).get(WAITS_LABEL) == "step 1.3 IST decision"
        resume_flow_run(run.id, run_input={"action": "abort", "name": "gina", "note": "beam"})

    with Driver(abort_ist) as driver, tags(tag):
        state = backfill(
            round="round17",
            workflow="topup-standard-steps",
            workflow_version="1.0.2",
            **FAST,
            return_state=True,
        )
    driver.check()
    assert state.is_cancelled(), (state.type, state.message)
    message = state.message or ""
    assert message.startswith("date 240501 aborted by gina") and "beam" in message
    assert "not started: ['240502']" in message


def test_cancellation_hook_removes_the_runs_jobs(flow_env: FlowEnv) -> None:
    sim = flow_env.sim
    sim.set_faults(never_finish={"1": [85421]})
    tag = unique_tag()
    cleaned: dict[str, Any] = {}

    def cancel_mid_wait() -> None:
        poll(lambda: any(j for j in sim.active_jobs()), 60, "the batch jobs")
        (run,) = runs_tagged(tag)
        poll(
            lambda: any(t.state_name == "Running" for t in task_runs(run.id)),
            30,
            "step 1.1 waiting",
        )
        cleanup_remote(topup_standard, read_run(run.id), Cancelling())
        cleaned["jobs_after"] = poll(lambda: sim.active_jobs() == [] or None, 30, "no jobs")
        cleaned["status"] = repository.workflow_run(str(run.id)).status  # type: ignore[union-attr]
        # the still-running flow sees its job gone without outputs: a crash, asked at once
        paused = wait_paused(tag, key="step1-1-manual-1", timeout=120)
        resume_flow_run(paused.id, run_input={"action": "abort", "name": "test"})

    with Driver(cancel_mid_wait) as driver, tags(tag):
        state = topup_standard(
            date="250626",
            workflow="topup-standard-steps",
            workflow_version="1.0.2",
            max_wait_minutes=0.05,
            poll_seconds=0.1,
            return_state=True,
        )
    driver.check()
    assert cleaned["status"] == "cancelled"
    # the job was removed from the batch queue, so the step could not complete: the flow
    # asked (1114, the run named) and the answer ended it
    assert state.is_cancelled() and "1114" in (state.message or "")
