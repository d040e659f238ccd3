"""Prefect down or overloaded: the facade answers 503 with Retry-After, never a 500, and the
task stays as it was so that the client's retry can start it.

Two real outages: nothing listening on Prefect's port, and an HTTP server on loopback that
answers every request with 503, as Prefect's own API does when its SQLite database is busy
(a burst of runs cannot be produced on demand here; it was found by tests/chaos/test_load.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.facade.served import Served, local_settings, serve

DATES_TASK = {
    "workflow_name": "get_available_dates_workflow",
    "task_name": "dates",
    "parameters": {"round": "round18"},
}


class _Busy(BaseHTTPRequestHandler):
    """Every request: 503, retry at once (the Prefect client honours Retry-After)."""

    hits = 0

    def _busy(self) -> None:
        type(self).hits += 1
        body = b'{"exception_message": "Service Unavailable"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _busy

    def log_message(self, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def busy_prefect() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def busy_facade(tmp_path: Path, busy_prefect: str) -> Iterator[Served]:
    settings = local_settings(tmp_path / "facade.db", tmp_path / "downloads", busy_prefect)
    with serve(settings) as served:
        yield served


def _assert_retry_later(response_status: int, headers: dict[str, str], body: dict) -> None:
    assert response_status == 503, body
    assert headers.get("retry-after") == "2"
    assert body["success"] is False and "retry" in body["error"]
    assert "Traceback" not in body["error"]


def test_start_while_prefect_is_down_is_503_and_changes_nothing(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        task_id = c.post("/api/tasks", json=DATES_TASK).json()["task_id"]
        started = c.post(f"/api/tasks/{task_id}/start")
        _assert_retry_later(started.status_code, dict(started.headers), started.json())
        assert "unreachable" in started.json()["error"]
        task = c.get("/api/tasks", params={"limit": 10}).json()["tasks"][0]
        assert task["id"] == task_id and task["flow_run_id"] is None


def test_start_while_prefect_is_busy_is_503_and_changes_nothing(busy_facade: Served) -> None:
    before = _Busy.hits
    with busy_facade.client("alice") as c:
        task_id = c.post("/api/tasks", json=DATES_TASK).json()["task_id"]
        started = c.post(f"/api/tasks/{task_id}/start")
        _assert_retry_later(started.status_code, dict(started.headers), started.json())
        assert "busy (HTTP 503)" in started.json()["error"]
        assert _Busy.hits > before  # Prefect was asked (and retried by its client)
        task = c.get("/api/tasks", params={"limit": 10}).json()["tasks"][0]
        assert task["id"] == task_id and task["flow_run_id"] is None
