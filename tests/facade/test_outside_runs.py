"""One source of truth: a flow run started in the CLI is a task of the API.

``topup run`` with carol's token creates the run in Prefect only (tag ``facade-user:carol``); the
facade lists it as carol's task (an admin sees it too, another user does not), its Socket.IO
room sends ``task_status`` / ``task_progress``, and the legacy endpoints work on it: progress,
pause, resume, executions, logs, downloads, cancel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from tests.facade.live_clients import SocketIoWatcher
from tests.facade.served import Served, wait_for
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST
from topup_cli.main import app

pytestmark = pytest.mark.slow

DATE = "250626"  # round18, three runs
RUN_ID = re.compile(r"started flow run \S+ \(([0-9a-f-]{36})\)")


def test_cli_run_is_a_task_with_live_events_and_controls(
    stack: Any,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    live_facade: Served,
    tmp_path: Path,
) -> None:
    sim.set_faults(**SIM_FAST, slow={"genJob.sh": 3.0})
    # The CLI is given carol's facade token: the run is hers.
    env = {
        "TOPUP_TOKEN": live_facade.token_for("carol"),
        "TOPUP_DATABASE_URL": stack.topup_database_url,
        "TOPUP_STACK_DATA_DIR": str(tmp_path / "cli"),
    }
    cli_args = [
        "run",
        "--date",
        DATE,
        "--round",
        "round18",
        "--site",
        stack_site,
        "--workflow",
        "topup-standard-steps",
        "--poll-seconds",
        "0.2",
        "--max-wait-minutes",
        "2",
        "--api-url",
        stack.api_url,
    ]
    res = CliRunner(env=env).invoke(app, [*cli_args, "--no-watch"])
    found = RUN_ID.search(res.output)
    assert found and res.exit_code == 0, res.output
    run_id = str(UUID(found.group(1)))
    stack_runs.created.append(UUID(run_id))  # cancelled at teardown should the test fail

    carol = live_facade.client("carol")
    admin = live_facade.client("ops", admin=True)
    bob = live_facade.client("bob")

    def listed_run(c: Any, flow_run_id: str) -> dict[str, Any] | None:
        tasks = c.get("/api/tasks", params={"limit": 100}).json()["tasks"]
        return next((t for t in tasks if t["flow_run_id"] == flow_run_id), None)

    def listed(c: Any) -> dict[str, Any] | None:
        return listed_run(c, run_id)

    task = wait_for(lambda: listed(carol), timeout=30, what="the CLI run in carol's tasks")
    task_id = task["id"]
    assert task["user_id"] == "carol"
    assert task["workflow_name"] == "topup-standard-steps" and task["date_param"] == DATE
    assert listed(admin)["id"] == task_id  # type: ignore[index]
    assert listed(bob) is None and bob.get(f"/api/tasks/{task_id}").status_code == 404

    sio = SocketIoWatcher(live_facade, "carol", task_id)
    try:
        # pause while step 1.1 runs, then resume: the legacy controls act on the CLI's run
        wait_for(
            lambda: (
                carol.get(f"/api/tasks/{task_id}/progress").json()["status"] == "running"
                and any(
                    e["step_name"] == "step1_1" and e["status"] == "running"
                    for e in carol.get(f"/api/tasks/{task_id}").json()["task"]["executions"]
                )
            ),
            timeout=120,
            what="step1_1 running",
        )
        paused = carol.post(f"/api/tasks/{task_id}/pause")
        assert paused.status_code == 200, paused.text
        wait_for(
            lambda: carol.get(f"/api/tasks/{task_id}/progress").json()["status"] == "paused",
            timeout=120,
            what="paused",
        )
        resumed = carol.post(f"/api/tasks/{task_id}/resume")
        assert resumed.status_code == 200, resumed.text
        done = wait_for(
            lambda: (
                (p := carol.get(f"/api/tasks/{task_id}/progress").json())["status"]
                in ("success", "failed", "cancelled")
                and p
            ),
            timeout=240,
            what="the run's end",
        )
        assert done["status"] == "success" and done["progress_percentage"] == 100
        wait_for(lambda: "success" in sio.statuses(), timeout=30, what="task_status success")
        wait_for(lambda: 100 in sio.progress(), timeout=30, what="task_progress 100")
    finally:
        sio.close()
    names = [n for n, _ in sio.events]
    assert names[0] == "connected"
    assert {"paused", "running", "success"} <= set(sio.statuses())
    assert sio.progress() == sorted(sio.progress())

    execs = carol.get(f"/api/executions/{task_id}").json()["executions"]
    assert [e["step_name"] for e in execs] == ["step1_1", "step1_2", "step1_3", "step1_4"]
    first = execs[0]["step_result_json"]
    assert first["complete_runs"] == sim.runs("round18", DATE) and first["total_runs"] == 3
    logs = carol.get(f"/api/tasks/{task_id}/logs").json()
    assert logs["success"] is True and logs["total"] > 0
    pdf = carol.get(f"/api/downloads/task/{task_id}", params={"file_type": "merged_pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert carol.post(f"/api/tasks/{task_id}/cancel").json() == {
        "success": False,
        "error": "Cannot cancel task in success state",
    }
    # listing again adopts nothing twice
    again = [t for t in admin.get("/api/tasks", params={"limit": 100}).json()["tasks"]]
    assert [t["id"] for t in again if t["flow_run_id"] == run_id] == [task_id]

    # A second CLI run, cancelled through the API while it runs.
    sim.set_faults(**SIM_FAST, slow={"genJob.sh": 30.0})
    res = CliRunner(env=env).invoke(app, [*cli_args, "--no-watch"])
    found = RUN_ID.search(res.output)
    assert found and res.exit_code == 0, res.output
    second = str(UUID(found.group(1)))
    stack_runs.created.append(UUID(second))
    other = wait_for(lambda: listed_run(carol, second), timeout=30, what="the second run")
    wait_for(
        lambda: carol.get(f"/api/tasks/{other['id']}/progress").json()["status"] == "running",
        timeout=60,
        what="the second run running",
    )
    cancelled = carol.post(f"/api/tasks/{other['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_for(
        lambda: carol.get(f"/api/tasks/{other['id']}").json()["task"]["state_name"] == "Cancelled",
        timeout=90,
        what="the second run Cancelled",
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--user", "not a name!"], {}, "user name must be"),
        ([], {"TOPUP_TOKEN": "tpk_forged"}, "unknown or revoked token"),
    ],
)
def test_cli_refuses_a_bad_user_or_token_before_any_call(
    args: list[str], env: dict[str, str], needle: str, tmp_path: Path
) -> None:
    env = {
        **env,
        "TOPUP_DATABASE_URL": f"sqlite:///{tmp_path / 'facade.db'}",
        "TOPUP_STACK_DATA_DIR": str(tmp_path / "cli"),
    }
    # Nothing listens at this API URL: reaching it would be another error.
    res = CliRunner(env=env).invoke(
        app,
        ["dates", "--round", "round18", *args, "--api-url", "http://127.0.0.1:9/api"],
    )
    assert res.exit_code == 2 and needle in res.output, res.output
