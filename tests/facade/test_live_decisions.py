"""Operator decisions, a failed step, and a rerun from a named step — through the facade.

The legacy steps workflow (1.1–1.4) meets an IST anomaly in step 1.3: the run pauses for an
operator, who decides run by run (register or exclude, or retry / abort); "abort" cancels the
task with the reason (an operator's choice, not a failure of the software); a resume with
``retry_from_step`` and ``check_ist=false`` starts a new flow run from step 1.3, whose steps
all complete, but which ends Unverified: the odd run was registered without a person's
per-run decision. Statistics then show step 1.3's error code.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.facade.served import Served, wait_for, wait_settled
from tests.stack.helpers import SIM_FAST

pytestmark = pytest.mark.slow

DATE = "250626"


def detail(c: httpx.Client, task_id: int) -> dict[str, Any]:
    return c.get(f"/api/tasks/{task_id}").json()["task"]


def test_decision_failure_and_rerun_from_step(
    sim: Any, stack_site: str, live_facade: Served
) -> None:
    runs = sim.runs("round18", DATE)
    sim.set_faults(**SIM_FAST, ist={str(runs[0]): 14000000})
    c = live_facade.client("alice")
    try:
        created = c.post(
            "/api/tasks",
            json={
                "workflow_name": "topup_standard_steps_workflow",
                "parameters": {
                    "user_id": "alice",
                    "date": DATE,
                    "round": "round18",
                    "site": stack_site,
                    "poll_seconds": 0.2,
                    "max_wait_minutes": 2,
                    "operator_timeout_hours": 0.1,
                },
            },
        )
        assert created.status_code == 201, created.text
        task = created.json()["task"]
        assert task["workflow_name"] == "topup-standard-steps"
        task_id = task["id"]
        assert c.post(f"/api/tasks/{task_id}/start").status_code == 200

        # -- the IST anomaly pauses the run for an operator decision
        waiting = wait_for(
            lambda: (t := detail(c, task_id))["waiting_for"] and t,
            timeout=120,
            what="the run waiting for an operator",
        )
        assert waiting["status"] == "paused" and waiting["current_step"] == "step1_3"
        assert waiting["waiting_for"]["field"] == "action"
        assert set(waiting["waiting_for"]["options"]) == {"decide", "retry", "abort"}
        assert set(waiting["waiting_for"]["fields"]) == {"register_runs", "exclude_runs"}
        assert waiting["waiting_for"]["description"]
        assert waiting["progress_percentage"] == 50  # 1.1 and 1.2 done
        # A decision the form does not offer is refused, nothing changes.
        bad = c.post(f"/api/tasks/{task_id}/resume", json={"decision": "approve"})
        assert bad.status_code == 400 and "decide/retry/abort" in bad.json()["error"]
        no_params = c.post(
            f"/api/tasks/{task_id}/resume", json={"parameters": {"check_ist": False}}
        )
        assert no_params.status_code == 400
        assert detail(c, task_id)["status"] == "paused"

        # -- abort: the task is cancelled, with the reason
        aborted = c.post(
            f"/api/tasks/{task_id}/resume", json={"decision": "abort", "note": "IST wrong"}
        )
        assert aborted.status_code == 200, aborted.text
        assert aborted.json()["message"] == "Task resumed with decision: abort"
        failed = wait_for(
            lambda: (t := detail(c, task_id))["status"] == "cancelled" and t,
            timeout=90,
            what="task cancelled",
        )
        failed = wait_settled(c, task_id)  # step 1.3's record may lag the run's end
        assert failed["completed_at"]
        steps = {e["step_name"]: e for e in failed["executions"]}
        assert steps["step1_3"]["status"] == "failed"
        assert steps["step1_3"]["error_code"] == 1302
        assert steps["step1_3"]["step_result_json"]["error_code"] == 1302
        first_run = failed["flow_run_id"]

        # -- rerun from step 1.3 with the IST check off: a new flow run, which completes
        unknown = c.post(f"/api/tasks/{task_id}/resume", json={"retry_from_step": "step9_9"})
        assert unknown.status_code == 400 and unknown.json()["error"].startswith("Unknown step")
        bad_value = c.post(
            f"/api/tasks/{task_id}/resume",
            json={"retry_from_step": "step1_3", "parameters": {"check_ist": "perhaps"}},
        )
        assert bad_value.status_code == 422
        assert detail(c, task_id)["flow_run_id"] == first_run  # nothing was started
        rerun = c.post(
            f"/api/tasks/{task_id}/resume",
            json={"retry_from_step": "step1_3", "parameters": {"check_ist": False}},
        )
        assert rerun.status_code == 200, rerun.text
        assert rerun.json()["message"] == "Task resumed from step: step1_3"
        assert rerun.json()["flow_run_id"] != first_run
        done = wait_for(
            lambda: (t := detail(c, task_id))["status"] in ("success", "failed") and t,
            timeout=120,
            what="rerun finished",
        )
        done = wait_settled(c, task_id)  # step 1.4's record may lag the run's end
        # check_ist=false registers every run as 15000000, the odd one included, without a
        # person choosing run by run: the steps all ran, but the run does not end Completed
        assert done["status"] == "failed", done
        assert "nobody chose to register or exclude them" in done["error_message"]
        assert done["progress_percentage"] == 100
        assert done["flow_run_history"] == [first_run]
        assert done["parameters"]["check_ist"] is False
        assert done["parameters"]["start_at_step"] == "step1_3"
        assert done["resume_from_step"] == "step1_3"
        names = [(e["step_name"], e["status"]) for e in done["executions"]]
        assert names == [
            ("step1_1", "success"),
            ("step1_2", "success"),
            ("step1_3", "failed"),
            ("step1_3", "success"),
            ("step1_4", "success"),
        ]

        stats = c.get("/api/stats", params={"hours": 1}).json()
        assert {"step": "step1_3", "error_code": 1302}.items() <= next(
            f for f in stats["failures"] if f["step"] == "step1_3"
        ).items()
        by_state = stats["runs_by_state"]
        assert by_state.get("cancelled", 0) >= 1 and by_state.get("failed", 0) >= 1
    finally:
        c.close()
