"""Run the facade for real: uvicorn on a free loopback port, in a thread of the test process.

Why a thread and not TestClient: the contract is HTTP (headers, streaming, WebSocket and
Socket.IO upgrades); tests talk to it with httpx and socketio clients over TCP.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlmodel import Session

from facade.config import FacadeSettings
from facade.main import create_app
from facade.tokens import issue_token

TRACEBACK = "Traceback"
APP_ROOT = Path(__file__).resolve().parents[2]


class ResponseAudit:
    """ASGI wrapper of a served facade: every text answer is searched for what must never
    leave the server (the downloads and database paths, the code's directory, tracebacks).

    Every facade a test serves goes through it; ``serve`` fails the test at its end when an
    answer leaked one of them, naming the request and the text around it.
    """

    TEXT_TYPES = ("application/json", "text/", "application/javascript")

    def __init__(self, app: Any, needles: list[str]) -> None:
        self.app = app
        self.needles = [n for n in dict.fromkeys(needles) if n]
        self.violations: list[str] = []
        self.checked = 0

    def _check(self, where: str, text: str) -> None:
        self.checked += 1
        for needle in self.needles:
            at = text.find(needle)
            if at >= 0:
                self.violations.append(
                    f"{where}: {needle!r} in ...{text[max(0, at - 80) : at + 80]!r}"
                )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        where = f"{scope.get('method', 'WS')} {scope.get('path')}"
        is_text = scope["type"] == "websocket"

        async def audited(message: Any) -> None:
            nonlocal is_text
            kind = message["type"]
            if kind == "http.response.start":
                headers = dict(message.get("headers") or [])
                ctype = headers.get(b"content-type", b"").decode("latin-1")
                is_text = ctype.startswith(self.TEXT_TYPES)
            elif kind == "http.response.body" and is_text and message.get("body"):
                self._check(where, message["body"].decode("utf-8", "replace"))
            elif kind == "websocket.send":
                data = message.get("text") or (message.get("bytes") or b"").decode(
                    "utf-8", "replace"
                )
                self._check(where, data)
            await send(message)

        await self.app(scope, receive, audited)


def leak_needles(settings: FacadeSettings) -> list[str]:
    """What no answer may contain: local paths of this facade, and tracebacks."""
    needles = [str(settings.downloads_dir), str(settings.downloads_dir.resolve()), TRACEBACK]
    if settings.database_url.startswith("sqlite:///"):
        needles.append(settings.database_url.removeprefix("sqlite:///"))
    needles.append(str(APP_ROOT) + "/")
    return needles


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    base_url: str
    settings: FacadeSettings
    app: object
    tokens: dict[str, str] = field(default_factory=dict)

    def token_for(self, user: str, admin: bool = False) -> str:
        if user not in self.tokens:
            with Session(self.app.state.engine) as session:  # type: ignore[attr-defined]
                self.tokens[user] = issue_token(session, user, admin=admin)
        return self.tokens[user]

    def client(self, user: str | None = None, admin: bool = False, **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token_for(user, admin)}"} if user else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def ws_url(self, path: str) -> str:
        return "ws://" + self.base_url.removeprefix("http://") + path


def local_settings(
    database: Path, downloads: Path, prefect_api_url: str | None = None, **extra: object
) -> FacadeSettings:
    """Facade settings on a SQLite file; Prefect unreachable (a free port) unless given."""
    downloads.mkdir(parents=True, exist_ok=True)
    return FacadeSettings(
        database_url=f"sqlite:///{database.resolve()}",
        prefect_api_url=prefect_api_url or f"http://127.0.0.1:{free_port()}/api",
        downloads_dir=downloads,
        **extra,  # type: ignore[arg-type]
    )


@contextmanager
def serve(settings: FacadeSettings) -> Iterator[Served]:
    """The facade on a free port until the block ends (the server is stopped and joined)."""
    # A short Engine.IO heartbeat: long-polling clients then disconnect in about a second.
    settings = settings.model_copy(
        update={"socketio_ping_interval": 1.0, "socketio_ping_timeout": 1.0}
    )
    app = create_app(settings)
    audit = ResponseAudit(app, leak_needles(settings))
    port = free_port()
    config = uvicorn.Config(
        audit,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"facade-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the facade did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not audit.violations, "answers leaked server paths or tracebacks:\n" + "\n".join(
        audit.violations[:20]
    )


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_settled(c: httpx.Client, task_id: int, timeout: float = 30.0) -> dict[str, Any]:
    """The detail of a task whose run has ended, once no step record shows it running.

    Prefect records a task run's states from its event stream, so the last step may still
    read running a moment after the run's final state. Bounded: after ``timeout`` s the
    detail is returned as it is and the caller's asserts decide."""
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/api/tasks/{task_id}")
        assert r.status_code == 200, r.text
        task: dict[str, Any] = r.json()["task"]
        unsettled = [e for e in task["executions"] if e["status"] in ("pending", "running")]
        if not unsettled or time.monotonic() > deadline:
            return task
        time.sleep(0.2)
