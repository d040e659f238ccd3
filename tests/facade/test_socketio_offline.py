"""The legacy Socket.IO endpoint: authentication, rooms, the first status event."""

from __future__ import annotations

import queue
from typing import Any

import pytest
import socketio

from tests.facade.served import Served


def connect(served: Served, token: str | None) -> tuple[socketio.Client, queue.Queue]:
    """A legacy python-socketio client (HTTP long-polling, as without websocket-client)."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    client = socketio.Client(reconnection=False)
    for name in ("connected", "task_status", "task_progress", "error"):
        client.on(name, lambda data, name=name: events.put((name, data)))
    client.connect(
        served.base_url,
        socketio_path="/socket.io/",
        transports=["polling"],
        auth={"token": token} if token else None,
        wait_timeout=10,
    )
    return client, events


def next_event(events: queue.Queue, name: str, timeout: float = 15) -> Any:
    while True:
        got, data = events.get(timeout=timeout)
        if got == name:
            return data


def test_socketio_requires_a_token(offline_facade: Served) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect(offline_facade, None)
    with pytest.raises(socketio.exceptions.ConnectionError):
        connect(offline_facade, "tpu_forged")


def test_subscribe_own_task_gets_state_and_foreign_task_is_refused(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        task_id = c.post("/api/tasks", json={"workflow_name": "available-dates"}).json()["task_id"]
    alice, alice_events = connect(offline_facade, offline_facade.token_for("alice"))
    bob, bob_events = connect(offline_facade, offline_facade.token_for("bob"))
    try:
        assert next_event(alice_events, "connected") == {"message": "Connected to Topup API"}
        ack = alice.call("subscribe_task", {"task_id": task_id}, timeout=10)
        assert ack == {"success": True, "task_id": task_id}
        status = next_event(alice_events, "task_status")
        assert status["task_id"] == task_id and status["status"] == "pending"
        progress = next_event(alice_events, "task_progress")
        assert progress["progress"] == 0
        refused = bob.call("subscribe_task", {"task_id": task_id}, timeout=10)
        assert refused == {"success": False, "error": "Task not found"}
        assert next_event(bob_events, "error") == {"message": "Task not found"}
        bad = bob.call("subscribe_task", {"task_id": "1; drop"}, timeout=10)
        assert bad["success"] is False
        # The task's state change (cancel before start) reaches the subscriber.
        with offline_facade.client("alice") as c:
            assert c.post(f"/api/tasks/{task_id}/cancel").status_code == 200
        cancelled = next_event(alice_events, "task_status")
        assert cancelled["status"] == "cancelled" and cancelled["message"] == "Task cancelled"
        assert alice.call("unsubscribe_task", {"task_id": task_id}, timeout=10)["success"]
    finally:
        alice.disconnect()
        bob.disconnect()


def test_websocket_needs_token_and_ownership(offline_facade: Served) -> None:
    import asyncio
    import json

    import websockets

    with offline_facade.client("alice") as c:
        task_id = c.post("/api/tasks", json={"workflow_name": "available-dates"}).json()["task_id"]
    url = offline_facade.ws_url(f"/api/tasks/{task_id}/ws")

    async def first_message(headers: dict[str, str]) -> Any:
        async with websockets.connect(url, additional_headers=headers) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 15))

    def bearer(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {offline_facade.token_for(user)}"}

    got = asyncio.run(first_message(bearer("alice")))
    assert got["event"] == "task_status" and got["data"]["status"] == "pending"
    for headers, code in [({}, 4401), (bearer("bob"), 4404)]:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            asyncio.run(first_message(headers))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
