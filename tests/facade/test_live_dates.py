"""A short workflow end to end through the facade: available-dates (step 0) on the real stack.

Also: a restart of the facade in the middle of a run loses nothing (a new process on the
same database and Prefect server reports the same task and can control it).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.facade.served import Served, serve, wait_for, wait_settled

pytestmark = pytest.mark.slow


def test_available_dates_task_survives_a_facade_restart(
    sim: Any, stack_site: str, live_facade: Served
) -> None:
    assert sim.runs("round18", "250626")  # the site the run lists
    with live_facade.client("alice") as c:
        health = c.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "healthy", health.text
        created = c.post(
            "/api/tasks",
            json={
                "workflow_name": "available-dates",
                "parameters": {"user_id": "alice", "round": "round18", "site": stack_site},
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        started = c.post(f"/api/tasks/{task_id}/start")
        assert started.status_code == 200, started.text
        assert started.json()["message"] == "Task started"
        again = c.post(f"/api/tasks/{task_id}/start")
        assert again.status_code == 400 and again.json()["error"].startswith("Cannot start task in")
        flow_run_id = started.json()["flow_run_id"]

    # A second facade process on the same database and Prefect (the first may be gone).
    with serve(live_facade.settings) as restarted, restarted.client("alice") as c:

        def finished() -> dict | None:
            p = c.get(f"/api/tasks/{task_id}/progress").json()
            return p if p["status"] in ("success", "failed", "cancelled") else None

        progress = wait_for(finished, timeout=120, interval=0.3, what="task end")
        assert progress["status"] == "success", progress
        wait_settled(c, task_id)  # the step's record may lag the run's end
        progress = c.get(f"/api/tasks/{task_id}/progress").json()
        assert progress["progress_percentage"] == 100
        assert progress["completed_steps"] == progress["total_steps"] == 1
        detail = c.get(f"/api/tasks/{task_id}").json()["task"]
        assert detail["flow_run_id"] == flow_run_id
        assert detail["started_at"] and detail["completed_at"]
        assert detail["current_step"] is None  # legacy: null after success
        [step0] = detail["executions"]
        assert step0["step_name"] == "step0" and step0["status"] == "success"
        assert step0["step_order"] == 1 and step0["duration_seconds"] is not None
        # Flow-run processes ship their logs in batches: they may trail the final state.
        logs = wait_for(
            lambda: (
                (got := c.get(f"/api/tasks/{task_id}/logs").json())
                and any(lg["execution_id"] == step0["id"] for lg in got["logs"])
                and got
            ),
            timeout=30,
            what="step 0's logs",
        )
        assert {lg["level"] for lg in logs["logs"]} <= {"debug", "info", "warning", "error"}
        stamps = [lg["timestamp"] for lg in logs["logs"]]
        assert stamps == sorted(stamps, reverse=True)
        # The two log routes answer alike (once the last batch of the run's logs landed).
        wait_for(
            lambda: (
                c.get(f"/api/logs/{task_id}").json()["total"]
                == c.get(f"/api/tasks/{task_id}/logs").json()["total"]
            ),
            timeout=30,
            what="the same log count from /api/logs and /api/tasks/{id}/logs",
        )
        by_query = c.get("/api/logs", params={"task_id": task_id, "level": "info"}).json()
        assert by_query["total"] > 0 and {lg["level"] for lg in by_query["logs"]} == {"info"}
        execs = c.get(f"/api/executions/{task_id}").json()
        assert execs["total"] == 1 and execs["executions"][0]["id"] == step0["id"]
        assert c.get("/api/executions", params={"task_id": task_id}).json()["total"] == 1
        assert c.post(f"/api/tasks/{task_id}/cancel").json()["error"] == (
            "Cannot cancel task in success state"
        )
        listed = c.get("/api/tasks", params={"status": "success"}).json()
        assert task_id in [t["id"] for t in listed["tasks"]]
