"""Legacy client sessions replayed in order over real HTTP against the real stack.

Each test is one whole session of a legacy client (spec ``legacy_api.md``: the notebook's
calls, §1 endpoint reference, §3.6 pause/resume, §4.3 step results), asserting status codes
and bodies key by key. Only the bearer token is new; ``site`` and ``poll_seconds`` point the
runs at this test's simulated site and keep them short.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from tests.facade.served import Served, wait_for, wait_settled
from tests.stack.helpers import SIM_FAST
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow

# §1.1: every Task representation carries these fields (possibly null).
TASK_KEYS = {
    "id",
    "user_id",
    "workflow_id",
    "task_name",
    "date_param",
    "status",
    "progress_percentage",
    "current_step",
    "pause_at_step",
    "resume_from_step",
    "error_message",
    "created_at",
    "started_at",
    "completed_at",
    "estimated_completion_time",
}
# §3.4: the execution record.
EXECUTION_KEYS = {
    "id",
    "task_id",
    "created_at",
    "step_name",
    "step_display_name",
    "step_order",
    "status",
    "start_time",
    "end_time",
    "duration_seconds",
    "retry_count",
    "output_summary",
    "error_details",
    "step_result_json",
    "console_output",
}
PROGRESS_KEYS = {
    "completed_at",
    "created_at",
    "current_step",
    "estimated_completion_time",
    "progress_percentage",
    "started_at",
    "status",
    "success",
    "task_id",
}


def detail(c: httpx.Client, task_id: int) -> dict[str, Any]:
    r = c.get(f"/api/tasks/{task_id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    task = body["task"]
    assert TASK_KEYS | {"executions", "parameters"} <= set(task), set(task)
    for e in task["executions"]:
        assert EXECUTION_KEYS <= set(e), set(e)
    return task


def progress(c: httpx.Client, task_id: int) -> dict[str, Any]:
    r = c.get(f"/api/tasks/{task_id}/progress")
    assert r.status_code == 200, r.text
    body = r.json()
    assert PROGRESS_KEYS <= set(body) and body["task_id"] == task_id
    return body


def wait_status(c: httpx.Client, task_id: int, wanted: str, timeout: float = 180) -> dict:
    """Poll the progress endpoint (as the notebook does) until the task reaches ``wanted``."""
    final = {"success", "failed", "cancelled"} - {wanted}

    def reached() -> dict | None:
        p = progress(c, task_id)
        assert p["status"] not in final, p
        return p if p["status"] == wanted else None

    reached_p = wait_for(reached, timeout=timeout, interval=0.3, what=f"task {task_id} {wanted}")
    if wanted in ("success", "failed"):
        wait_settled(c, task_id)  # the last step's record may lag the run's end
        return progress(c, task_id)
    return reached_p


def step_runs(task: dict[str, Any], step: str) -> list[dict[str, Any]]:
    return [e for e in task["executions"] if e["step_name"] == step]


def test_get_available_dates_session(sim: Any, stack_site: str, live_facade: Served) -> None:
    """create → start → auto-pause after step0 → resume with a changed round (step0 runs
    again and pauses again) → resume ``retry_from_step: step1`` → success (§3.6)."""
    sim.set_faults(**SIM_FAST)
    c = live_facade.client("user123")

    # The catalog names the legacy workflow and its shape (§1.13, §1.14, §4.2).
    listed = c.get("/api/workflows")
    assert listed.status_code == 200
    names = {w["name"]: w for w in listed.json()["workflows"]}
    assert names["get_available_dates_workflow"]["status"] == "active"
    wf = c.get("/api/workflows/get_available_dates_workflow").json()["workflow"]
    assert wf["name"] == "get_available_dates_workflow"
    assert [s["id"] for s in wf["steps"]] == ["step0", "step1"]
    assert wf["steps"][0]["pause_after"] is True
    assert "user_id" in wf["parameters_config"]["required"]
    valid = c.post(
        "/api/workflows/get_available_dates_workflow/validate",
        json={"parameters": {"user_id": "user123", "round": "round18"}},
    )
    assert valid.status_code == 200
    assert {k: valid.json()[k] for k in ("error", "success", "valid")} == {
        "error": None,
        "success": True,
        "valid": True,
    }

    # §1.4 create (the notebook's body; site points at this test's simulated site).
    created = c.post(
        "/api/tasks",
        json={
            "user_id": "user123",
            "workflow_name": "get_available_dates_workflow",
            "task_name": "获取可用日期",
            "parameters": {
                "user_id": "user123",
                "round": "round18",
                "sort_order": "asc",
                "site": stack_site,
            },
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["success"] is True and body["status"] == "pending"
    assert body["message"] == "Task created successfully"
    task_id = body["task_id"]
    task = body["task"]
    assert TASK_KEYS <= set(task)
    assert task["id"] == task_id and task["user_id"] == "user123"
    assert task["task_name"] == "获取可用日期" and task["status"] == "pending"
    assert task["progress_percentage"] == 0 and task["date_param"] is None
    for key in ("current_step", "pause_at_step", "started_at", "completed_at"):
        assert task[key] is None, key
    assert "\\u83b7" in created.text  # §0: non-ASCII escaped

    # §1.9 start, then the automatic pause after step0 (§3.3: 1 of 2 steps = 50 %).
    started = c.post(f"/api/tasks/{task_id}/start")
    assert started.status_code == 200, started.text
    assert {k: started.json()[k] for k in ("message", "success", "task_id")} == {
        "message": "Task started",
        "success": True,
        "task_id": task_id,
    }
    paused = wait_status(c, task_id, "paused")
    assert paused["progress_percentage"] == 50 and paused["current_step"] == "step0"
    task = detail(c, task_id)
    assert task["pause_at_step"] == "step0" and task["current_step"] == "step0"
    [step0] = step_runs(task, "step0")
    assert step0["status"] == "success" and step0["step_order"] == 1
    result = step0["step_result_json"]
    # §4.3 step0 keys, with include_processed effective (the default)
    assert result["step_name"] == "step0" and result["sort_order"] == "asc"
    assert result["all_dates"] == sorted(result["all_dates"]) and result["all_dates"]
    assert result["total_count"] == len(result["all_dates"])
    assert set(result["processed_dates"]) | set(result["unprocessed_dates"]) == set(
        result["all_dates"]
    )
    assert result["processed_count"] == len(result["processed_dates"])
    assert result["unprocessed_count"] == len(result["unprocessed_dates"])
    assert result["round"] == "round18"
    assert task["parameters"]["round"] == "round18" and task["parameters"]["user_id"] == "user123"

    # §1.10: pausing a paused task is refused with the legacy text.
    again = c.post(f"/api/tasks/{task_id}/pause")
    assert again.status_code == 400
    assert again.json() == {"success": False, "error": "Cannot pause task in paused state"}

    # §3.6: resume with a changed round: step0 runs again (round17) and pauses again.
    resumed = c.post(f"/api/tasks/{task_id}/resume", json={"parameters": {"round": "round17"}})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["message"] == "Task resumed from step: step0"
    assert resumed.json()["success"] is True

    def paused_with_round17() -> dict | None:
        t = detail(c, task_id)
        runs = [e for e in step_runs(t, "step0") if e["status"] == "success"]
        if t["status"] != "paused" or len(runs) < 2:
            return None
        return t

    task = wait_for(paused_with_round17, timeout=180, interval=0.3, what="step0 again")
    assert task["parameters"]["round"] == "round17" and task["pause_at_step"] == "step0"
    second = step_runs(task, "step0")[-1]["step_result_json"]
    assert second["round"] == "round17" and second["all_dates"] != result["all_dates"]

    # §3.6: resume at the placeholder step: it does nothing and the task succeeds.
    final = c.post(f"/api/tasks/{task_id}/resume", json={"retry_from_step": "step1"})
    assert final.status_code == 200, final.text
    assert final.json()["message"] == "Task resumed from step: step1"
    done = wait_status(c, task_id, "success")
    assert done["progress_percentage"] == 100 and done["current_step"] is None
    task = detail(c, task_id)
    assert task["completed_at"] is not None and task["error_message"] is None
    [step1] = step_runs(task, "step1")
    assert step1["status"] == "success" and step1["step_order"] == 2
    assert step1["step_result_json"]["step_name"] == "step1_noop"

    # §1.11/§1.12 on a finished task, and the task in the user's list (§1.5).
    cancel = c.post(f"/api/tasks/{task_id}/cancel")
    assert cancel.status_code == 400
    assert cancel.json() == {"success": False, "error": "Cannot cancel task in success state"}
    listed_tasks = c.get("/api/tasks", params={"user_id": "user123"}).json()
    assert listed_tasks["success"] is True and listed_tasks["limit"] == 10
    assert task_id in [t["id"] for t in listed_tasks["tasks"]]
    logs = c.get(f"/api/tasks/{task_id}/logs").json()
    assert logs["success"] is True and logs["total"] == len(logs["logs"])


STEPS_DATE = 250626  # round18, three runs; sent as a number, as the notebook does


def test_topup_standard_steps_session(sim: Any, stack_site: str, live_facade: Served) -> None:
    """The notebook's run of the 4-step workflow: create (date as a number) → start → poll
    to success → executions with the §4.3 keys → merged PDF → ``retry_from_step``."""
    sim.set_faults(**SIM_FAST)
    c = live_facade.client("user123")
    date = str(STEPS_DATE)
    created = c.post(
        "/api/tasks",
        json={
            "user_id": "user123",
            "workflow_name": "topup_standard_steps_workflow",
            "parameters": {
                "check_ist": True,
                "date": STEPS_DATE,
                "download_files": True,
                "max_wait_minutes": 30,
                "round": "round18",
                "submit_job": True,
                "user_id": "user123",
                "site": stack_site,
                "poll_seconds": 0.2,
            },
        },
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    assert created.json()["task"]["task_name"].startswith("topup_standard_steps_workflow_")
    assert c.post(f"/api/tasks/{task_id}/start").json()["message"] == "Task started"
    done = wait_status(c, task_id, "success", timeout=300)
    assert done["progress_percentage"] == 100 and done["current_step"] is None
    task = detail(c, task_id)
    params = task["parameters"]
    assert params["date"] == date and params["round"] == "round18"
    assert params["user_id"] == "user123" and params["download_files"] is True
    assert [e["step_name"] for e in task["executions"]] == [
        "step1_1",
        "step1_2",
        "step1_3",
        "step1_4",
    ]
    assert [e["step_order"] for e in task["executions"]] == [1, 2, 3, 4]
    assert all(e["status"] == "success" for e in task["executions"])
    s11, s12, s13, s14 = (e["step_result_json"] for e in task["executions"])
    runs = sim.runs("round18", date)
    # §4.3 step1_1: date, total_runs, complete_runs[], incomplete_runs[], elapsed_time (s)
    assert s11["date"] == date and s11["total_runs"] == len(runs)
    assert s11["complete_runs"] == runs and s11["incomplete_runs"] == []
    assert isinstance(s11["elapsed_time"], float) and s11["elapsed_time"] >= 0
    # step1_2: date, remaining_files (the ``ls -la`` of INJ/<date> after the move)
    assert s12["date"] == date and s12["remaining_files"].startswith("total ")
    assert all(f"Interval_run{r}.txt" in s12["remaining_files"] for r in runs)
    # step1_3: ist_results {run: [int, int, int]}, invalid_runs []
    assert set(s13["ist_results"]) == {str(r) for r in runs} and s13["invalid_runs"] == []
    assert all(len(v) == 3 for v in s13["ist_results"].values())
    assert all(str(r) in s13["interval_file_content"] for r in runs)
    # step1_4: pdf_local_path relative, downloads/<task>_<order>/mergedd_IST_<date>.pdf
    assert s14["pdf_local_path"] == f"downloads/{task_id}_4/mergedd_IST_{date}.pdf"
    assert s14["pdf_remote_path"].endswith("/mergedd_IST.pdf")
    pdf = c.get(s14["pdf_download_url"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    by_task = c.get(
        f"/api/downloads/task/{task_id}", params={"file_type": "merged_pdf", "date": date}
    )
    assert by_task.status_code == 200 and by_task.content == pdf.content
    unknown = c.get(f"/api/downloads/task/{task_id}", params={"file_type": "png"})
    assert unknown.status_code == 400
    assert unknown.json() == {"success": False, "error": "Unknown file_type: png"}

    # §1.11: run again from a named step (a new flow run; the earlier steps count as done)
    again = c.post(f"/api/tasks/{task_id}/resume", json={"retry_from_step": "step1_4"})
    assert again.status_code == 200, again.text
    assert again.json()["message"] == "Task resumed from step: step1_4"
    wait_status(c, task_id, "success", timeout=180)
    task = detail(c, task_id)
    assert [e["step_name"] for e in task["executions"]][-1] == "step1_4"
    assert len(step_runs(task, "step1_4")) == 2


def test_topup_standard_session(
    sim: Any, stack_site: str, live_facade: Served, stack: PrefectStack
) -> None:
    """The SKILL quick start on the 21-step workflow (fixed: ``user_id`` repeated) →
    start → pause during 1.1 → resume with a new ``max_wait_minutes`` → resume
    ``retry_from_step`` → cancel; every answer in the legacy shape."""
    sim.set_faults(
        **SIM_FAST, slow={"genJob.sh": 3.0}, never_finish={"2": sim.runs("round18", "250626")}
    )
    c = live_facade.client("user123")
    wf = c.get("/api/workflows/topup_standard_workflow").json()["workflow"]
    assert wf["name"] == "topup_standard_workflow" and wf["version"] == "1.0.0"
    assert [s["id"] for s in wf["steps"]][:4] == ["step1_1", "step1_2", "step1_3", "step1_4"]
    assert len(wf["steps"]) == 21
    body = {
        "user_id": "user123",
        "workflow_name": "topup_standard_workflow",
        "parameters": {
            "user_id": "user123",
            "date_param": "250626",
            "submit_job": True,
            "max_wait_minutes": 25,
            "site": stack_site,
            "poll_seconds": 0.2,
        },
    }
    created = c.post("/api/tasks", json=body)
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    task = created.json()["task"]
    assert task["date_param"] == "250626" and task["workflow_version"] == "1.0.0"
    bad_version = c.post("/api/tasks", json={**body, "workflow_version": "0.9.9"})
    assert bad_version.status_code == 400 and "0.9.9" in bad_version.json()["error"]

    assert c.post(f"/api/tasks/{task_id}/start").status_code == 200
    wait_for(
        lambda: any(
            e["step_name"] == "step1_1" and e["status"] == "running"
            for e in detail(c, task_id)["executions"]
        ),
        timeout=120,
        what="step1_1 running",
    )
    paused = c.post(f"/api/tasks/{task_id}/pause")
    assert paused.status_code == 200 and paused.json()["success"] is True
    wait_status(c, task_id, "paused", timeout=120)
    task = detail(c, task_id)
    assert task["pause_at_step"] == "step1_1" and task["progress_percentage"] == 100 // 21
    # Prefect names the run and its task runs for people; the legacy answer keeps the task's
    # name, and the run has one round: and one date: tag
    assert {e["task_run_name"] for e in task["executions"]} == {"step1_1"}
    with stack.sync_client() as client:
        run = client.read_flow_run(UUID(task["flow_run_id"]))
        (task_run,) = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    assert run.name == "round18-250626-topup-standard-1.0.0"
    assert task_run.name == "1.1 First-pass jobs (genJob.sh, boss.condor)"
    assert [t for t in run.tags if t.startswith(("round:", "date:"))] == [
        "round:round18",
        "date:250626",
    ]

    resumed = c.post(f"/api/tasks/{task_id}/resume", json={"parameters": {"max_wait_minutes": 30}})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["message"] == "Task resumed from step: step1_1"
    assert detail(c, task_id)["parameters"]["max_wait_minutes"] == 30

    # Step 2.1's jobs never end: the run waits there. Cancel it, then rerun from step 1.4.
    wait_for(
        lambda: any(e["step_name"] == "step2_1" for e in detail(c, task_id)["executions"]),
        timeout=180,
        what="step2_1 started",
    )
    busy = c.post(f"/api/tasks/{task_id}/resume", json={"retry_from_step": "step1_4"})
    assert busy.status_code == 400
    assert busy.json() == {"success": False, "error": "Cannot resume task in running state"}
    cancelled = c.post(f"/api/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200
    assert {k: cancelled.json()[k] for k in ("message", "success")} == {
        "message": "Task cancelled",
        "success": True,
    }
    wait_status(c, task_id, "cancelled", timeout=120)
    retry = c.post(f"/api/tasks/{task_id}/resume", json={"retry_from_step": "step1_4"})
    assert retry.status_code == 200, retry.text
    assert retry.json()["message"] == "Task resumed from step: step1_4"
    try:
        # Prefect writes a task run's final state from its event stream: the second 1.4 may
        # show its end a moment after 2.1 started.
        task = wait_for(
            lambda: (
                (t := detail(c, task_id))
                and len(step_runs(t, "step2_1")) == 2
                and [e["status"] for e in step_runs(t, "step1_4")] == ["success", "success"]
                and t
            ),
            timeout=180,
            what="step1_4 again (success), then step2_1",
        )
        assert task["resume_from_step"] == "step1_4"
    except BaseException:
        c.post(f"/api/tasks/{task_id}/cancel")  # its jobs never end: free round18's slot
        raise
    assert c.post(f"/api/tasks/{task_id}/cancel").status_code == 200
    done = wait_status(c, task_id, "cancelled", timeout=120)
    assert done["completed_at"] is not None
    assert c.post(f"/api/tasks/{task_id}/cancel").json() == {
        "success": False,
        "error": "Cannot cancel task in cancelled state",
    }
