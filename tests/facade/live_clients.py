"""Live-update clients for the slow tests: a legacy Socket.IO client and a WebSocket reader."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

import socketio
import websockets

from tests.facade.served import Served


class SocketIoWatcher:
    """A python-socketio client subscribed to one task, recording every event it gets."""

    def __init__(self, served: Served, user: str, task_id: int) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = socketio.Client(reconnection=False)
        for name in ("connected", "task_status", "task_progress"):
            self.client.on(name, lambda data, name=name: self._record(name, data))
        self.client.connect(
            served.base_url,
            socketio_path="/socket.io/",
            transports=["polling"],
            auth={"token": served.token_for(user)},
            wait_timeout=10,
        )
        ack = self.client.call("subscribe_task", {"task_id": task_id}, timeout=10)
        assert ack == {"success": True, "task_id": task_id}, ack

    def _record(self, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((name, data))

    def statuses(self) -> list[str]:
        with self._lock:
            return [d["status"] for n, d in self.events if n == "task_status"]

    def progress(self) -> list[int]:
        with self._lock:
            return [d["progress"] for n, d in self.events if n == "task_progress"]

    def close(self) -> None:
        self.client.disconnect()


class WebSocketWatcher:
    """Reads ``/api/tasks/<id>/ws`` in a thread of its own (its own event loop)."""

    def __init__(self, served: Served, user: str, task_id: int) -> None:
        self.url = served.ws_url(f"/api/tasks/{task_id}/ws")
        self.headers = {"Authorization": f"Bearer {served.token_for(user)}"}
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.received: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        async with websockets.connect(self.url, additional_headers=self.headers) as ws:
            while not self._stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                message = json.loads(raw)
                self.received.append(message)
                self.messages.put(message)

    def statuses(self) -> list[str]:
        return [m["data"]["status"] for m in list(self.received) if m["event"] == "task_status"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
