"""Creating tasks: legacy names and shapes, parameter validation, no side effect on errors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from facade.models import Task
from flows import definitions
from tests.facade.served import Served


def task_rows(served: Served) -> int:
    with Session(served.app.state.engine) as session:  # type: ignore[attr-defined]
        return session.exec(select(func.count()).select_from(Task)).one()


def test_legacy_request_creates_a_typed_task(offline_facade: Served) -> None:
    body = {
        "user_id": "user123",
        "workflow_name": "topup_standard_workflow",
        "parameters": {
            "user_id": "user123",
            "date_param": "250624",
            "submit_job": True,
            "max_wait_minutes": 25,
            "download_files": True,
        },
    }
    with offline_facade.client("user123") as c:
        r = c.post("/api/tasks", json=body)
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["success"] is True and out["status"] == "pending"
        assert out["message"] == "Task created successfully"
        task = out["task"]
        assert isinstance(out["task_id"], int) and task["id"] == out["task_id"]
        # a legacy name means the version it is declared on (1.0.0 for this one)
        assert task["workflow_name"] == "topup-standard"
        assert task["workflow_version"] == definitions.load("topup_standard_workflow").version
        assert task["workflow_version"] == "1.0.0"
        assert task["date_param"] == "250624" and task["progress_percentage"] == 0
        assert task["task_name"].startswith("topup_standard_workflow_")
        for key in ("completed_at", "started_at", "current_step", "error_message"):
            assert task[key] is None
        detail = c.get(f"/api/tasks/{task['id']}").json()["task"]
    params = detail["parameters"]
    # date_param became the flow's date; defaults were applied; legacy extras are echoed.
    assert params["date"] == "250624" and "date_param" not in params
    assert params["round"] == "round18" and params["check_ist"] is True
    assert params["submit_job"] is True and params["max_wait_minutes"] == 25
    assert params["user_id"] == "user123" and params["download_files"] is True
    assert detail["executions"] == [] and detail["status"] == "pending"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"parameters": {}}, 400, "Missing required field: workflow_name"),
        ({"workflow_name": "get_available_dates_workflow"}, 201, None),  # a legacy name
        ({"workflow_name": "no_such_workflow"}, 400, "Workflow not found: no_such_workflow"),
        # the legacy notebook sends dates as numbers
        ({"workflow_name": "topup-standard", "parameters": {"date": 250520}}, 201, None),
        (
            {"workflow_name": "topup-standard", "parameters": {"date": 25052}},
            422,
            "Invalid parameter date",
        ),
        (
            {"workflow_name": "topup-standard", "parameters": {}},
            400,
            "Missing required parameter: date",
        ),
        (
            {"workflow_name": "topup-standard", "parameters": {"date": "250631"}},
            422,
            "Invalid parameter date",
        ),
        (
            {"workflow_name": "topup-standard", "parameters": {"date": ""}},
            422,
            "Invalid parameter date",
        ),
        (
            {"workflow_name": "topup-standard", "parameters": {"date": "25062"}},
            422,
            "Invalid parameter date",
        ),
        (
            {
                "workflow_name": "topup-standard",
                "parameters": {"date": "250624", "max_wait_minutes": 999},
            },
            422,
            "Invalid parameter max_wait_minutes",
        ),
        (
            {
                "workflow_name": "topup-standard",
                "parameters": {"date": "250624", "submit_job": "maybe"},
            },
            422,
            "Invalid parameter submit_job",
        ),
        (
            {
                "workflow_name": "topup-standard",
                "parameters": {"date": "250624", "round": "x; rm -rf /"},
            },
            422,
            "Invalid parameter round",
        ),
        (
            {"workflow_name": "topup-standard", "parameters": {"date": "250624", "bogus": 1}},
            422,
            "Unknown parameter: bogus",
        ),
        (
            {
                "workflow_name": "topup-standard",
                "parameters": {"date": "250624", "approve_reset": True},
            },
            422,
            "approved_by",
        ),
        ({"workflow_name": "topup-standard", "parameters": "date=250624"}, 422, "parameters"),
        (
            {
                "workflow_name": "topup-standard",
                "workflow_version": "9.9.9",
                "parameters": {"date": "250624"},
            },
            400,
            "Workflow topup-standard has no version 9.9.9; known: 1.0.0, ",
        ),
        (
            {
                "workflow_name": "topup_standard_workflow",  # a legacy alias: the real name
                "workflow_version": "9.9.9",
                "parameters": {"date": "250624"},
            },
            400,
            "Workflow topup-standard has no version 9.9.9; known:",
        ),
        (
            {"workflow_name": "backfill", "parameters": {"round": "round18", "dates": "250631"}},
            422,
            "Invalid parameter dates: Value error, '250631' is not a calendar date",
        ),
    ],
)
def test_invalid_requests_are_rejected_without_side_effects(
    offline_facade: Served, body: dict[str, Any], status: int, needle: str | None
) -> None:
    before = task_rows(offline_facade)
    with offline_facade.client("alice") as c:
        r = c.post("/api/tasks", json=body)
    assert r.status_code == status, r.text
    if needle is None:
        assert task_rows(offline_facade) == before + 1
        return
    assert r.json()["success"] is False
    assert needle in r.json()["error"]
    assert task_rows(offline_facade) == before


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "Malformed JSON"),
        (b"", "Request body is required"),
        (b"null", "Request body"),
        (b"[1, 2]", "JSON object"),
    ],
)
def test_malformed_bodies(offline_facade: Served, content: bytes, needle: str) -> None:
    with offline_facade.client("alice") as c:
        r = c.post("/api/tasks", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422)
    assert needle in r.json()["error"]
    assert task_rows(offline_facade) == 0


def test_list_filters_and_paging(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        ids = [
            c.post(
                "/api/tasks",
                json={"workflow_name": "available-dates", "task_name": f"t{i}"},
            ).json()["task_id"]
            for i in range(3)
        ]
        page = c.get("/api/tasks", params={"limit": 2}).json()
        assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
        assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]  # newest first
        rest = c.get("/api/tasks", params={"limit": 2, "offset": 2}).json()
        assert [t["id"] for t in rest["tasks"]] == [ids[0]]
        pending = c.get("/api/tasks", params={"status": "pending"}).json()
        assert pending["total"] == 3
        assert c.get("/api/tasks", params={"status": "running"}).json()["total"] == 0
        assert c.get("/api/tasks", params={"status": "bogus"}).status_code == 422
        assert c.get("/api/tasks", params={"limit": -1}).status_code == 422
        # cancelling a task that never started needs no Prefect run
        cancelled = c.post(f"/api/tasks/{ids[0]}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert c.get(f"/api/tasks/{ids[0]}").json()["task"]["status"] == "cancelled"
        again = c.post(f"/api/tasks/{ids[0]}/cancel")
        assert again.status_code == 400
        assert again.json()["error"] == "Cannot cancel task in cancelled state"
        assert c.post(f"/api/tasks/{ids[0]}/start").json()["error"] == (
            "Cannot start task in cancelled state"
        )
        assert c.post(f"/api/tasks/{ids[1]}/pause").json()["error"] == (
            "Cannot pause task in pending state"
        )
        assert c.post(f"/api/tasks/{ids[1]}/resume").json()["error"] == (
            "Cannot resume task in pending state"
        )
