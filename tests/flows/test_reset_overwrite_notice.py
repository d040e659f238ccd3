"""Issue 14: the reset's approval text says what it will overwrite, before anyone approves.

reset.sh snapshots the round's cumulative files as ``<dir>/<yymmdd>`` (remote clock); when
it ran already today, a second run replaces that snapshot. The sim's tree is given today's
snapshot as reset.sh would have left it; the flow pauses for the reset's approval and the
form's text names the snapshot, not a server path.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path
from uuid import UUID

from prefect import get_client, tags
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
from prefect.client.schemas.objects import Log
from prefect.flow_runs import resume_flow_run

from flows.naming import task_of
from flows.topup_standard import topup_standard
from tests.flows.conftest import (
    FAST,
    ROUND,
    Driver,
    FlowEnv,
    poll,
    task_runs,
    unique_tag,
    wait_paused,
)
from tests.flows.test_operator import _form_description

DATE = "250626"


def test_reset_approval_names_todays_snapshot_it_overwrites(flow_env: FlowEnv) -> None:
    sim = flow_env.sim
    inj = Path(sim.inj(ROUND))
    today = datetime.now().strftime("%y%m%d")  # the sim's login node is this machine
    shutil.copyfile(inj / "interval.txt", inj / "InjSigIntervalCal" / today)
    tag = unique_tag()
    seen: dict[str, str] = {}

    def operator() -> None:
        run = wait_paused(tag, key="step7-verify-1")
        resume_flow_run(run.id, run_input={"decision": "accept", "name": "dave", "note": "t"})
        run = wait_paused(tag, key="step7-approve")
        seen["text"] = _form_description(run.id, "step7-approve")
        resume_flow_run(run.id, run_input={"decision": "skip", "name": "dave", "note": "no"})

    with Driver(operator) as driver, tags(tag):
        state = topup_standard(
            date=DATE, workflow_version="1.2.0", start_at_step="step7", **FAST, return_state=True
        )
    driver.check()
    assert state.is_completed() or state.name == "Unverified", state.message
    text = seen["text"]
    assert "What the reset overwrites" in text
    assert "reset.sh ran already today: it will overwrite" in text
    assert f"InjSigIntervalCal/{today}" in text
    assert str(inj) not in text  # names relative to the round's tree, never server paths
    # the snapshot was not touched: the operator skipped the reset
    assert (inj / "InjSigIntervalCal" / today).read_text() == (inj / "interval.txt").read_text()


def test_preapproved_reset_warns_what_it_overwrites_before_it_runs(flow_env: FlowEnv) -> None:
    """With ``approve_reset`` nobody reads a form: the same notice is logged at WARNING
    before the reset starts."""
    sim = flow_env.sim
    inj = Path(sim.inj(ROUND))
    today = datetime.now().strftime("%y%m%d")
    shutil.copyfile(inj / "interval.txt", inj / "InjSigIntervalCal" / today)
    state = topup_standard(
        date=DATE, **FAST, approve_reset=True, approved_by="alice", return_state=True
    )
    assert state.is_completed(), state.message
    run_id = UUID(state.result()["flow_run_id"])
    notice = (
        f"reset.sh ran already today: it will overwrite today's snapshot InjSigIntervalCal/{today}"
    )

    def warnings() -> list[Log]:
        with get_client(sync_client=True) as client:
            return client.read_logs(
                log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[run_id]),
                    level=LogFilterLevel(ge_=logging.WARNING),
                ),
                limit=200,
            )

    def pre_approved_notices() -> list[Log]:
        return [
            lg
            for lg in warnings()
            if lg.level == logging.WARNING and "pre-approved" in lg.message and notice in lg.message
        ]

    # A run's logs reach the API in batches, possibly after its state is already final.
    warned = poll(pre_approved_notices, 60, "the pre-approved reset's warning in the API's logs")
    step7 = next(t for t in task_runs(run_id) if task_of(t.task_key) == "step7")
    assert step7.start_time is not None and warned[0].timestamp < step7.start_time
    assert str(inj) not in warned[0].message
