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
    # One row per attempt (legacy_api.md 3.4): when the pause lands before step 1.1 ends,
    # step 1.1 runs again after the resume (re-attached to its jobs) and has a second row.
    steps = ["step1_1", "step1_2", "step1_3", "step1_4"]
    assert [e["step_name"] for e in execs] in (steps, ["step1_1", *steps])
    last = {e["step_name"]: e for e in execs}  # a step's later attempt wins
    assert [last[s]["status"] for s in steps] == ["success"] * 4
    first = last["step1_1"]["step_result_json"]
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
    # the date was processed by the first run: running it again is asked for (issue 14)
    res = CliRunner(env=env).invoke(app, [*cli_args, "--no-watch", "--rerun"])
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


BACKFILL_ID = re.compile(r"started backfill \S+ \(([0-9a-f-]{36})\)")


def test_backfill_children_are_tasks_of_the_backfills_user(
    stack: Any,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    live_facade: Served,
    tmp_path: Path,
) -> None:
    """Issue 12: a backfill started in the CLI and each date's run it starts are dave's
    tasks (an admin sees them, erin does not); progress, executions, logs and downloads work
    on a child. A child runs inside the backfill's process (a Prefect subflow), which
    Prefect cannot suspend or stop alone: pause and cancel on it answer 409 naming the
    backfill's task, and cancelling that task ends both as Cancelled."""
    sim.set_faults(**SIM_FAST, slow={"genJob.sh": 3.0})
    env = {
        "TOPUP_DATABASE_URL": stack.topup_database_url,
        "TOPUP_STACK_DATA_DIR": str(tmp_path / "cli"),
    }

    def backfill(date: str) -> str:
        res = CliRunner(env=env).invoke(
            app,
            [
                "backfill",
                "--round",
                "round18",
                "--dates",
                date,
                "--workflow",
                "topup-standard-steps",
                "--site",
                stack_site,
                "--user",
                "dave",
                "--poll-seconds",
                "0.2",
                "--max-wait-minutes",
                "2",
                # Other tests of this stack may have verified every date of round18 (a date's
                # steps count from earlier runs): a proposed submission would wait for approval.
                "--no-submission",
                "--no-watch",
                "--api-url",
                stack.api_url,
            ],
        )
        found = BACKFILL_ID.search(res.output)
        assert found and res.exit_code == 0, res.output
        stack_runs.created.append(UUID(found.group(1)))  # cancelled at teardown if left
        return str(UUID(found.group(1)))

    dave = live_facade.client("dave")
    admin = live_facade.client("ops", admin=True)
    erin = live_facade.client("erin")

    def tasks(c: Any) -> list[dict[str, Any]]:
        return c.get("/api/tasks", params={"limit": 200}).json()["tasks"]

    def child_of(c: Any, date: str, not_in: set[str]) -> dict[str, Any] | None:
        return next(
            (
                t
                for t in tasks(c)
                if t["workflow_name"] == "topup-standard-steps"
                and t["date_param"] == date
                and t["flow_run_id"] not in not_in
            ),
            None,
        )

    parent = backfill(DATE)
    mine = wait_for(
        lambda: next((t for t in tasks(dave) if t["flow_run_id"] == parent), None),
        timeout=30,
        what="the backfill in dave's tasks",
    )
    assert mine["user_id"] == "dave" and mine["workflow_name"] == "backfill"
    child = wait_for(lambda: child_of(dave, DATE, {parent}), timeout=120, what="the child")
    child_id = child["id"]
    stack_runs.created.append(UUID(child["flow_run_id"]))
    assert child["user_id"] == "dave"
    seen_by_admin = {t["id"] for t in tasks(admin)}
    assert {mine["id"], child_id} <= seen_by_admin
    assert not {mine["id"], child_id} & {t["id"] for t in tasks(erin)}
    assert erin.get(f"/api/tasks/{child_id}").status_code == 404

    # A date of a backfill runs inside the backfill's process (a subflow): Prefect cannot
    # suspend it on its own, and the API says so and what to do instead.
    wait_for(
        lambda: any(
            e["step_name"] == "step1_1" and e["status"] == "running"
            for e in dave.get(f"/api/tasks/{child_id}").json()["task"]["executions"]
        ),
        timeout=120,
        what="the child's step1_1 running",
    )
    refused = dave.post(f"/api/tasks/{child_id}/pause")
    assert refused.status_code == 409, refused.text
    assert "one date of a backfill" in refused.json()["error"]
    assert "backfill's task" in refused.json()["error"]
    done = wait_for(
        lambda: (
            (p := dave.get(f"/api/tasks/{child_id}/progress").json())["status"]
            in ("success", "failed", "cancelled")
            and p
        ),
        timeout=240,
        what="the child's end",
    )
    assert done["status"] == "success" and done["progress_percentage"] == 100
    execs = dave.get(f"/api/executions/{child_id}").json()["executions"]
    assert [e["step_name"] for e in execs] == ["step1_1", "step1_2", "step1_3", "step1_4"]
    assert execs[0]["step_result_json"]["complete_runs"] == sim.runs("round18", DATE)
    logs = dave.get(f"/api/tasks/{child_id}/logs").json()
    assert logs["success"] is True and logs["total"] > 0
    pdf = dave.get(f"/api/downloads/task/{child_id}", params={"file_type": "merged_pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    seen: dict[str, Any] = {}

    def backfill_ended() -> bool:
        seen.update(dave.get(f"/api/tasks/{mine['id']}/progress").json())
        return seen["status"] in ("success", "failed")

    try:
        wait_for(backfill_ended, timeout=120, what="the backfill's end")
    except AssertionError as exc:  # say where it stood
        raise AssertionError(f"{exc}; last progress: {seen}") from None
    with stack.sync_client() as client:  # --no-submission reached the flow run
        assert client.read_flow_run(UUID(parent)).parameters["propose_submission"] is False

    # a second backfill: its child is cancelled through the API while it runs
    sim.set_faults(**SIM_FAST, slow={"genJob.sh": 30.0})
    second = backfill("250625")
    other = wait_for(lambda: child_of(dave, "250625", {second}), timeout=120, what="child 2")
    stack_runs.created.append(UUID(other["flow_run_id"]))
    wait_for(
        lambda: dave.get(f"/api/tasks/{other['id']}/progress").json()["status"] == "running",
        timeout=60,
        what="the second child running",
    )
    refused = dave.post(f"/api/tasks/{other['id']}/cancel")
    assert refused.status_code == 409 and "backfill's task" in refused.json()["error"]
    # cancelling the backfill's task stops its process; Prefect then cancels the date's run
    parent_task = wait_for(
        lambda: next((t for t in tasks(dave) if t["flow_run_id"] == second), None),
        timeout=30,
        what="the second backfill's task",
    )
    cancelled = dave.post(f"/api/tasks/{parent_task['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    for task_id in (parent_task["id"], other["id"]):
        wait_for(
            lambda t=task_id: (
                dave.get(f"/api/tasks/{t}").json()["task"]["state_name"] == "Cancelled"
            ),
            timeout=120,
            what=f"task {task_id} Cancelled",
        )
