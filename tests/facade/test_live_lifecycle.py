"""The full legacy client sequence on the real stack, with live updates.

create → start → poll → pause (while a step runs: "pausing", then "paused") → resume →
cancel (remote jobs removed) → logs → executions (+ outputs) → download the merged PDF,
while a Socket.IO client and a WebSocket client receive the status and progress events.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from tests.facade.live_clients import SocketIoWatcher, WebSocketWatcher
from tests.facade.served import Served, wait_for
from tests.stack.helpers import SIM_FAST

pytestmark = pytest.mark.slow

DATE = "250626"  # round18, three runs


def execution(c: httpx.Client, task_id: int, step: str) -> dict[str, Any] | None:
    runs = [
        e
        for e in c.get(f"/api/tasks/{task_id}").json()["task"]["executions"]
        if e["step_name"] == step
    ]
    return runs[-1] if runs else None


def status(c: httpx.Client, task_id: int) -> str:
    return c.get(f"/api/tasks/{task_id}/progress").json()["status"]


def test_client_sequence_with_live_updates(sim: Any, stack_site: str, live_facade: Served) -> None:
    # Step 1.1 long enough to pause during it; the step-2 jobs never end (until cancelled).
    sim.set_faults(
        **SIM_FAST, slow={"genJob.sh": 3.0}, never_finish={"2": sim.runs("round18", DATE)}
    )
    c = live_facade.client("alice")
    created = c.post(
        "/api/tasks",
        json={
            "user_id": "alice",
            "workflow_name": "topup-standard",
            "workflow_version": "1.0.0",
            "task_name": "lifecycle",
            "parameters": {
                "user_id": "alice",
                "date": DATE,
                "round": "round18",
                "site": stack_site,
                "poll_seconds": 0.2,
                "max_wait_minutes": 3,
            },
        },
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    sio = SocketIoWatcher(live_facade, "alice", task_id)
    ws = WebSocketWatcher(live_facade, "alice", task_id)
    try:
        assert c.post(f"/api/tasks/{task_id}/start").status_code == 200

        # -- pause while step 1.1 runs: effective at the next step boundary
        wait_for(
            lambda: (e := execution(c, task_id, "step1_1")) and e["status"] == "running",
            timeout=90,
            what="step1_1 running",
        )
        paused = c.post(f"/api/tasks/{task_id}/pause")
        assert paused.status_code == 200, paused.text
        # Suspension waits for the running step: reported as "pausing" until it ends.
        assert paused.json() == {
            "message": "Task pausing",
            "status": "pausing",
            "success": True,
            "task_id": task_id,
        }
        wait_for(lambda: status(c, task_id) == "paused", timeout=90, what="paused")
        detail = c.get(f"/api/tasks/{task_id}").json()["task"]
        assert detail["state_name"] == "Suspended"
        assert detail["pause_at_step"] == "step1_1"
        assert [e["status"] for e in detail["executions"]] == ["success"]  # 1.1 finished
        assert c.post(f"/api/tasks/{task_id}/pause").status_code == 400

        # -- resume: continues after step 1.1 (its result comes back cached); new
        # parameters are validated first and a bad one changes nothing
        bad = c.post(f"/api/tasks/{task_id}/resume", json={"parameters": {"poll_seconds": 0}})
        assert bad.status_code == 422 and "poll_seconds" in bad.json()["error"]
        assert status(c, task_id) == "paused"
        # (the same value: a changed one would invalidate the cached steps that take it)
        resumed = c.post(f"/api/tasks/{task_id}/resume", json={"parameters": {"poll_seconds": 0.2}})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["message"] == "Task resumed from step: step1_1"
        wait_for(
            lambda: (e := execution(c, task_id, "step2_1")) and e["status"] == "running",
            timeout=120,
            what="step2_1 running (waiting for jobs that never end)",
        )
        assert detail_params(c, task_id)["poll_seconds"] == 0.2
        progress = c.get(f"/api/tasks/{task_id}/progress").json()
        assert progress["status"] == "running" and progress["current_step"] == "step2_1"
        assert progress["completed_steps"] == 4 and progress["progress_percentage"] == 4 * 100 // 21
        wait_for(sim.active_jobs, timeout=60, what="step 2.1's jobs in the batch queue")

        # -- cancel: the run ends Cancelled and its batch jobs are removed
        cancelled = c.post(f"/api/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        wait_for(
            lambda: c.get(f"/api/tasks/{task_id}").json()["task"]["state_name"] == "Cancelled",
            timeout=90,
            what="flow run Cancelled",
        )
        wait_for(lambda: not sim.active_jobs(), timeout=60, what="remote jobs removed")
        assert status(c, task_id) == "cancelled"

        # -- logs, executions, outputs, download
        logs = c.get(f"/api/tasks/{task_id}/logs", params={"limit": 500}).json()
        assert logs["total"] > 10
        assert {lg["level"] for lg in logs["logs"]} <= {"debug", "info", "warning", "error"}
        errors = c.get(f"/api/tasks/{task_id}/logs", params={"level": "error"}).json()["logs"]
        assert all(lg["level"] == "error" for lg in errors)
        execs = c.get(f"/api/executions/{task_id}").json()["executions"]
        names = [e["step_name"] for e in execs]
        assert names[:4] == ["step1_1", "step1_2", "step1_3", "step1_4"]  # no cached replays
        assert all(e["status"] == "success" for e in execs[:4])
        assert execs[0]["step_result_json"]["runs_complete"] == sim.runs("round18", DATE)
        assert any(lg["execution_id"] == execs[0]["id"] for lg in logs["logs"])
        outputs = c.get(f"/api/executions/{execs[3]['id']}/outputs").json()["outputs"]
        downloaded = [o for o in outputs if o["metadata"]["role"] == "download"]
        assert downloaded and downloaded[0]["content_type"] == "application/pdf"
        pdf = c.get(
            f"/api/downloads/task/{task_id}", params={"file_type": "merged_pdf", "date": DATE}
        )
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert hashlib.sha256(pdf.content).hexdigest() == downloaded[0]["file_hash"]
        listed = c.get("/api/downloads/list", params={"task_id": task_id}).json()["files"]
        assert [f["filename"].rsplit("/", 1)[-1] for f in listed] == [f"mergedd_IST_{DATE}.pdf"]
        assert c.get(listed[0]["url"]).content == pdf.content
        log_file = c.get(f"/api/downloads/task/{task_id}", params={"file_type": "log"})
        assert log_file.status_code == 200 and "step1_1" in log_file.text

        # -- live updates: both channels saw the run go through its states
        def missing(statuses: list[str]) -> set[str]:
            return {"running", "pausing", "paused", "cancelled"} - set(statuses)

        for channel, watcher in (("socket.io", sio), ("websocket", ws)):
            try:
                wait_for(lambda w=watcher: not missing(w.statuses()), timeout=30, what=channel)
            except AssertionError:
                seen = watcher.statuses()
                raise AssertionError(f"{channel} saw {seen}, missing {missing(seen)}") from None
        progress_events = sio.progress()
        assert progress_events == sorted(progress_events) and max(progress_events) >= 19
        stats = c.get("/api/stats", params={"hours": 1}).json()
        assert stats["steps"]["step1_1"]["completed"] >= 1
        assert stats["steps"]["step1_1"]["median_seconds"] > 0
        assert stats["runs_by_state"].get("cancelled", 0) >= 1
    finally:
        sio.close()
        ws.close()
        c.close()


def detail_params(c: httpx.Client, task_id: int) -> dict[str, Any]:
    return c.get(f"/api/tasks/{task_id}").json()["task"]["parameters"]
