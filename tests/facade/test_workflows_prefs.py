"""Workflow catalog and per-user preferences."""

from __future__ import annotations

from flows import definitions
from tests.facade.served import Served


def test_workflow_list_and_detail(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        listed = c.get("/api/workflows").json()
        again = c.get("/api/workflows").json()
        new_view = c.get("/api/workflows", params={"view": "new"}).json()
        by_header = c.get("/api/workflows", headers={"X-Topup-Workflow-View": "new"}).json()
        detail = c.get("/api/workflows/topup_standard_workflow").json()["workflow"]
        new_detail = c.get("/api/workflows/topup-standard", params={"view": "new"}).json()
        old = c.get("/api/workflows/topup-standard", params={"version": "1.0.0"}).json()
        missing = c.get("/api/workflows/get_available_dates_nope")
        no_version = c.get("/api/workflows/topup-standard", params={"version": "9.9.9"})
        bad_view = c.get("/api/workflows", params={"view": "other"})
    assert listed["success"] is True
    # Legacy view (default): legacy names, one per name, at the version the alias is on.
    by_name = {w["name"]: w for w in listed["workflows"]}
    assert by_name["topup_standard_workflow"]["version"] == "1.0.0"
    assert by_name["topup_standard_steps_workflow"]["version"] == "1.0.2"
    assert by_name["get_available_dates_workflow"]["workflow"] == "get-available-dates"
    assert {"backfill", "available-dates"} <= set(by_name)  # new workflows: own names
    legacy_keys = {"config_path", "created_at", "description", "id", "name", "status"}
    for item in listed["workflows"]:
        assert legacy_keys | {"updated_at", "version"} <= set(item)
        assert "/" not in item["config_path"]  # a file name, never a server path
    ids = {w["name"]: w["id"] for w in listed["workflows"]}
    assert ids == {w["name"]: w["id"] for w in again["workflows"]}  # stable
    assert all(isinstance(i, int) for i in ids.values())
    # New view: every definition version under its own name.
    names = {(w["name"], w["version"]) for w in new_view["workflows"]}
    assert {(d.name, d.version) for d in definitions.list_definitions()} == names
    assert [w["id"] for w in by_header["workflows"]] == [w["id"] for w in new_view["workflows"]]
    assert detail["name"] == "topup_standard_workflow" and detail["version"] == "1.0.0"
    assert detail["workflow"] == "topup-standard" and len(detail["steps"]) == 21
    first = detail["steps"][0]
    assert first["id"] == "step1_1" and first["order"] == 1 and first["timeout_minutes"] > 0
    assert detail["parameters_config"]["required"] == ["user_id", "date"]
    assert detail["parameters_schema"]["properties"]["date"]
    assert {"max_parallel_tasks", "max_retries", "default_timeout_minutes"} <= set(
        detail["execution_config"]
    )
    assert new_detail["workflow"]["name"] == "topup-standard"
    assert "max_retries" not in new_detail["workflow"]["execution_config"]
    assert old["workflow"]["version"] == "1.0.0"
    assert missing.status_code == 404
    assert missing.json()["error"] == "Workflow not found: get_available_dates_nope"
    assert no_version.status_code == 404
    known = ", ".join(
        d.version for d in definitions.list_definitions() if d.name == "topup-standard"
    )
    assert no_version.json()["error"] == (
        f"Workflow topup-standard has no version 9.9.9; known: {known}"
    )
    assert bad_view.status_code in (400, 422)


def test_legacy_dates_workflow_shape(offline_facade: Served) -> None:
    """The legacy dates workflow as its clients read it (spec legacy_api.md §4.2)."""
    with offline_facade.client("alice") as c:
        wf = c.get("/api/workflows/get_available_dates_workflow").json()["workflow"]
    assert wf["name"] == "get_available_dates_workflow"
    assert [(s["id"], s["order"]) for s in wf["steps"]] == [("step0", 1), ("step1", 2)]
    step0, step1 = wf["steps"]
    assert step0["pause_after"] is True
    assert step0["on_failure"] == {"action": "stop", "notify": True}
    assert step1["on_failure"]["action"] == "stop" and step1["pause_after"] is False
    assert wf["execution_config"]["max_retries"] == 2
    assert wf["execution_config"]["default_timeout_minutes"] == 5
    assert wf["parameters_config"]["required"] == ["user_id"]
    optional = {o["name"]: o for o in wf["parameters_config"]["optional"]}
    assert optional["include_processed"]["default"] is True
    assert optional["sort_order"]["enum"] == ["asc", "desc"]


def test_validate_endpoint(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        ok = c.post(
            "/api/workflows/topup_standard_workflow/validate",
            json={"parameters": {"date_param": "250624", "user_id": "alice"}},
        ).json()
        bad = c.post("/api/workflows/topup-standard/validate", json={"parameters": {}}).json()
        empty = c.post("/api/workflows/available-dates/validate").json()
        unknown = c.post("/api/workflows/nope/validate", json={})
    assert ok["valid"] is True and ok["success"] is True and ok["error"] is None
    assert ok["parameters"]["date"] == "250624" and ok["parameters"]["submit_job"] is True
    assert bad == {
        "error": "Missing required parameter: date",
        "field": "date",
        "success": False,
        "valid": False,
    }
    assert empty["valid"] is True and empty["parameters"]["round"] == "round18"
    assert unknown.status_code == 404


def test_preferences_round_trip_and_defaults_apply(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c, offline_facade.client("bob") as bob:
        empty = c.get("/api/preferences").json()["preferences"]
        assert empty["default_workflow"] is None and empty["parameter_defaults"] == {}
        put = c.put(
            "/api/preferences",
            json={
                "default_workflow": "topup_standard_workflow",
                "parameter_defaults": {
                    "topup-standard": {"round": "round17", "max_wait_minutes": 40}
                },
                "notification_settings": {"on_failure": True},
            },
        )
        assert put.status_code == 200, put.text
        prefs = c.get("/api/preferences").json()["preferences"]
        assert prefs["default_workflow"] == "topup-standard"
        assert prefs["parameter_defaults"]["topup-standard"]["round"] == "round17"
        # Partial update keeps the other groups.
        c.put("/api/preferences", json={"notification_settings": {"on_failure": False}})
        prefs = c.get("/api/preferences").json()["preferences"]
        assert prefs["default_workflow"] == "topup-standard"
        assert prefs["notification_settings"] == {"on_failure": False}
        # Stored defaults fill what the request leaves out; the request wins.
        task = c.post(
            "/api/tasks",
            json={
                "workflow_name": "topup-standard",
                "parameters": {"date": "250624", "max_wait_minutes": 5},
            },
        ).json()["task_id"]
        params = c.get(f"/api/tasks/{task}").json()["task"]["parameters"]
        assert params["round"] == "round17" and params["max_wait_minutes"] == 5
        # Per user: bob has none.
        assert bob.get("/api/preferences").json()["preferences"]["parameter_defaults"] == {}
        for bad, needle in [
            ({"default_workflow": "nope"}, "Workflow not found"),
            (
                {"parameter_defaults": {"topup-standard": {"round": "r; ls"}}},
                "Invalid parameter round",
            ),
            ({"parameter_defaults": {"topup-standard": {"nope": 1}}}, "Unknown parameter: nope"),
            ({"parameter_defaults": {"nope": {}}}, "Workflow not found"),
            ({"colour": "blue"}, "colour"),
        ]:
            r = c.put("/api/preferences", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert needle in r.json()["error"]
        assert c.get("/api/preferences").json()["preferences"]["parameter_defaults"] == {
            "topup-standard": {"round": "round17", "max_wait_minutes": 40}
        }
