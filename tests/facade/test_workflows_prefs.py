"""Workflow catalog and per-user preferences."""

from __future__ import annotations

from flows import definitions
from tests.facade.served import Served


def test_workflow_list_and_detail(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        listed = c.get("/api/workflows").json()
        again = c.get("/api/workflows").json()
        detail = c.get("/api/workflows/topup_standard_workflow").json()["workflow"]
        old = c.get("/api/workflows/topup-standard", params={"version": "1.0.0"}).json()
        missing = c.get("/api/workflows/get_available_dates_nope")
        no_version = c.get("/api/workflows/topup-standard", params={"version": "9.9.9"})
    assert listed["success"] is True
    names = {(w["name"], w["version"]) for w in listed["workflows"]}
    assert {(d.name, d.version) for d in definitions.list_definitions()} == names
    assert "config_path" not in listed["workflows"][0]  # no server paths
    ids = {(w["name"], w["version"]): w["id"] for w in listed["workflows"]}
    assert ids == {(w["name"], w["version"]): w["id"] for w in again["workflows"]}  # stable
    assert all(isinstance(i, int) for i in ids.values())
    assert detail["name"] == "topup-standard" and len(detail["steps"]) == 21
    first = detail["steps"][0]
    assert first["id"] == "step1_1" and first["order"] == 1 and first["timeout_minutes"] > 0
    assert "date" in detail["parameters_config"]["required"]
    assert detail["parameters_schema"]["properties"]["date"]
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
