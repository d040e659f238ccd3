"""Issue 14, date safety in the facade: a task for a date without raw data in the round is
refused at create (422, field ``date``) with no flow run; a date already processed needs
``rerun: true`` (409, field ``rerun``, saying what was done), and is accepted with it.
Flow runs are counted through the Prefect API before and after."""

from __future__ import annotations

from typing import Any

import pytest

from tests.facade.served import Served, wait_for
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST

pytestmark = pytest.mark.slow

EMPTY = "250627"  # round18: in DATA, without any raw file
DATE = "250626"  # round18: three runs


def _count(stack: Any) -> int:
    with stack.sync_client() as client:
        return client.count_flow_runs()


def test_dates_are_checked_before_any_flow_run(
    stack: Any, sim: Any, stack_site: str, stack_runs: StackRuns, live_facade: Served
) -> None:
    sim.set_faults(**SIM_FAST)
    listing = stack_runs.start("available-dates/available-dates", round="round18", site=stack_site)
    assert stack_runs.wait(listing.id).state.is_completed()
    c = live_facade.client("user123")

    def body(date: str | int, **extra: Any) -> dict[str, Any]:
        return {
            "user_id": "user123",
            "workflow_name": "topup_standard_steps_workflow",
            "parameters": {
                "user_id": "user123",
                "date": date,
                "round": "round18",
                "site": stack_site,
                "poll_seconds": 0.2,
                "max_wait_minutes": 2,
                **extra,
            },
        }

    before = _count(stack)
    refused = c.post("/api/tasks", json=body(EMPTY))
    assert refused.status_code == 422, refused.text
    answer = refused.json()
    assert answer["success"] is False and answer["field"] == "date"
    assert f"date {EMPTY} has no raw data in round18" in answer["error"]
    assert f"DATA/{EMPTY} has no raw file" in answer["error"]
    as_number = c.post("/api/tasks", json=body(int(EMPTY)))  # the legacy notebook's form
    assert as_number.status_code == 422 and as_number.json()["field"] == "date"
    assert _count(stack) == before, "a refused date created a flow run"

    # a processed date: done once through the API, then refused without rerun
    first = c.post("/api/tasks", json=body(DATE)).json()["task_id"]
    assert c.post(f"/api/tasks/{first}/start").status_code == 200
    wait_for(
        lambda: (
            c.get(f"/api/tasks/{first}/progress").json()["status"]
            in ("success", "failed", "cancelled")
        ),
        timeout=300,
        what="the first run's end",
    )
    before = _count(stack)
    again = c.post("/api/tasks", json=body(DATE))
    assert again.status_code == 409, again.text
    assert again.json()["field"] == "rerun"
    assert f"date {DATE} of round18 was already processed" in again.json()["error"]
    assert "rerun: true" in again.json()["error"]
    assert _count(stack) == before

    rerun = c.post("/api/tasks", json=body(DATE, rerun=True))
    assert rerun.status_code == 201, rerun.text
    task = rerun.json()["task_id"]
    assert c.get(f"/api/tasks/{task}").json()["task"]["parameters"]["rerun"] is True
    started = c.post(f"/api/tasks/{task}/start")
    assert started.status_code == 200, started.text
    assert _count(stack) == before + 1
    assert c.post(f"/api/tasks/{task}/cancel").status_code == 200
    wait_for(
        lambda: c.get(f"/api/tasks/{task}/progress").json()["status"] == "cancelled",
        timeout=120,
        what="the rerun cancelled",
    )
    # a resume onto a date without raw data is refused as a create would be
    before = _count(stack)
    moved = c.post(
        f"/api/tasks/{task}/resume",
        json={"retry_from_step": "step1_1", "parameters": {"date": EMPTY}},
    )
    assert moved.status_code == 422 and moved.json()["field"] == "date", moved.text
    assert _count(stack) == before
    assert c.get(f"/api/tasks/{task}").json()["task"]["parameters"]["date"] == DATE
