"""The database submission (step 8) as a legacy-style client drives it through the facade:
a ``submit-constants`` task, its approvals answered with ``decision``, and a second
submission of the same range that needs "submit again" naming the earlier ledger row (a
form field sent in ``inputs``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from store import dates as date_store
from store import ledger
from tests.facade.served import Served, wait_for
from tests.stack.helpers import SIM_FAST

pytestmark = pytest.mark.slow

ROUND = "round17"  # no history: every run of interval.txt is from the date prepared here
DATE = "240501"


def detail(c: httpx.Client, task_id: int) -> dict[str, Any]:
    return c.get(f"/api/tasks/{task_id}").json()["task"]


def waiting(c: httpx.Client, task_id: int, what: str) -> dict[str, Any]:
    return wait_for(lambda: (t := detail(c, task_id))["waiting_for"] and t, timeout=180, what=what)


def start(c: httpx.Client, site: str) -> int:
    created = c.post(
        "/api/tasks",
        json={
            "workflow_name": "submit-constants",
            "parameters": {"user_id": "alice", "round": ROUND, "site": site},
        },
    )
    assert created.status_code == 201, created.text
    task_id = int(created.json()["task"]["id"])
    assert c.post(f"/api/tasks/{task_id}/start").status_code == 200
    return task_id


def test_submission_through_the_facade(
    sim: Any, stack: Any, stack_site: str, live_facade: Served
) -> None:
    sim.set_faults(**SIM_FAST)
    sim.prepare(DATE, ROUND, through="1")
    runs = sim.runs(ROUND, DATE)
    url = stack.topup_database_url
    date_store.mark_date(ROUND, DATE, "verified", runs=runs, registered_runs=runs, url=url)
    before = len(ledger.submissions(ROUND, url=url))
    c = live_facade.client("alice")
    try:
        task_id = start(c, stack_site)
        for part in (1, 2, 3):
            t = waiting(c, task_id, f"the approval of part 8.{part}")
            assert t["waiting_for"]["field"] == "decision"
            assert set(t["waiting_for"]["options"]) == {"approve", "skip", "abort"}
            assert "sub_switch 0" in (t["waiting_for"]["description"] or "")
            ok = c.post(
                f"/api/tasks/{task_id}/resume", json={"decision": "approve", "note": "checked"}
            )
            assert ok.status_code == 200, ok.text
            wait_for(lambda: not detail(c, task_id)["waiting_for"], timeout=60, what="resumed")
        done = wait_for(
            lambda: (t := detail(c, task_id))["status"] in ("success", "failed") and t,
            timeout=180,
            what="the submission finished",
        )
        assert done["status"] == "success", done["error_message"]
        rows = ledger.submissions(ROUND, url=url)[before:]
        assert [(r.part, r.outcome, r.approved_by, r.runs) for r in rows] == [
            (p, "submitted", "alice", runs) for p in ("8.1", "8.2", "8.3")
        ]
        inserted = list(sim.db_ledger())
        assert inserted

        # the same range again: the form names the earlier row and needs it back
        again = start(c, stack_site)
        t = waiting(c, again, "the submit-again question")
        assert set(t["waiting_for"]["options"]) == {"submit_again", "skip", "abort"}
        assert t["waiting_for"]["fields"] == ["earlier_submission"]
        bogus = c.post(
            f"/api/tasks/{again}/resume", json={"decision": "skip", "inputs": {"bogus": 1}}
        )
        assert bogus.status_code == 400 and "bogus" in bogus.json()["error"]
        skip = c.post(
            f"/api/tasks/{again}/resume",
            json={"decision": "skip", "inputs": {"earlier_submission": rows[0].id}},
        )
        assert skip.status_code == 200, skip.text
        end = wait_for(
            lambda: (t := detail(c, again))["status"] in ("success", "failed") and t,
            timeout=180,
            what="the second submission finished",
        )
        assert end["status"] == "success", end["error_message"]
        assert len(ledger.submissions(ROUND, url=url)) == before + 3  # nothing new
        assert list(sim.db_ledger()) == inserted  # nothing reached the database again
    finally:
        c.close()
