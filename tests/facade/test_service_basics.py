"""Banner, health, OpenAPI, error conventions, CORS and the body limit — over real HTTP."""

from __future__ import annotations

import json

from tests.facade.served import Served


def test_banner_is_public_and_health_reports_prefect_down(offline_facade: Served) -> None:
    with offline_facade.client() as c:
        banner = c.get("/")
        assert banner.status_code == 200
        assert banner.json()["message"] == "Topup HTTP API"
        # Nothing listens on the configured Prefect port: a real outage, reported as such.
        health = c.get("/api/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["prefect"]["ok"] is False


def test_legacy_json_conventions(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        r = c.post(
            "/api/tasks",
            json={
                "workflow_name": "get_available_dates_workflow",
                "task_name": "获取可用日期",
                "parameters": {"round": "round18"},
            },
        )
    assert r.status_code == 201
    raw = r.content.decode("ascii")  # non-ASCII is escaped, as the Flask service did
    assert "\\u83b7" in raw
    keys = list(json.loads(raw).keys())
    assert keys == sorted(keys)
    created = r.json()["task"]["created_at"]
    # naive UTC with microseconds
    assert len(created) == 26 and created[10] == "T" and "+" not in created


def test_framework_errors_are_json_with_honest_codes(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        missing = c.get("/api/nope")
        assert missing.status_code == 404
        assert missing.json()["error"] == "Not Found" and missing.json()["success"] is False
        assert c.get("/api/tasks/").status_code == 404  # no trailing slash, like the legacy
        assert c.get("/api/tasks/-1").status_code == 404
        assert c.get("/api/tasks/abc").status_code == 422
        wrong = c.delete("/api/tasks/1")
        assert wrong.status_code == 405
        assert wrong.json()["error"] == "Method Not Allowed"
        bad_int = c.get("/api/tasks", params={"limit": "abc"})
        assert bad_int.status_code == 422
        assert "limit" in bad_int.json()["error"]


def test_openapi_documents_every_route_with_examples(offline_facade: Served) -> None:
    with offline_facade.client() as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    expected = {
        "/",
        "/api/health",
        "/api/tasks",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/progress",
        "/api/tasks/{task_id}/logs",
        "/api/tasks/{task_id}/start",
        "/api/tasks/{task_id}/pause",
        "/api/tasks/{task_id}/resume",
        "/api/tasks/{task_id}/cancel",
        "/api/workflows",
        "/api/workflows/{workflow_name}",
        "/api/workflows/{workflow_name}/validate",
        "/api/executions/{task_id}",
        "/api/executions/{execution_id}/outputs",
        "/api/logs/{task_id}",
        "/api/downloads/list",
        "/api/downloads/check/{filename}",
        "/api/downloads/task/{task_id}",
        "/api/downloads/{filename}",
        "/api/stats",
        "/api/preferences",
    }
    assert expected <= set(spec["paths"])
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            ok = op["responses"].get("200") or op["responses"].get("201") or {}
            content = ok.get("content", {})
            documented = (
                any("example" in v for v in content.values()) or "application/pdf" in content
            )
            assert documented, f"{method.upper()} {path} has no example"


def test_cors_allow_list(offline_facade: Served) -> None:
    with offline_facade.client() as c:
        allowed = c.options(
            "/api/tasks",
            headers={
                "Origin": "https://ops.example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        denied = c.options(
            "/api/tasks",
            headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
        )
        simple = c.get("/", headers={"Origin": "https://evil.example.com"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ops.example.org"
    assert "access-control-allow-origin" not in denied.headers
    assert "access-control-allow-origin" not in simple.headers


def test_body_size_limit(offline_facade: Served) -> None:
    too_big = b'{"workflow_name": "x", "parameters": {"pad": "' + b"a" * (17 * 1024 * 1024) + b'"}}'
    with offline_facade.client("alice") as c:
        r = c.post("/api/tasks", content=too_big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.json()["success"] is False

        # Chunked upload without a Content-Length is counted too.
        def chunks():  # type: ignore[no-untyped-def]
            yield too_big[: 8 * 1024 * 1024]
            yield too_big[8 * 1024 * 1024 :]

        r2 = c.post("/api/tasks", content=chunks(), headers={"Content-Type": "application/json"})
        assert r2.status_code == 413
        assert c.get("/api/tasks").json()["total"] == 0


def test_unreachable_prefect_does_not_break_offline_routes(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        assert c.get("/api/workflows").status_code == 200
        assert c.get("/api/tasks").status_code == 200
