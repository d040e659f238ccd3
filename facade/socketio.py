"""The legacy Socket.IO endpoint (``/socket.io/``), now working and authenticated.

Events as the legacy README promised: the server sends ``connected`` on connect; the client
emits ``subscribe_task {"task_id"}`` and joins room ``task_<id>``, which then receives
``task_status`` and ``task_progress``; ``unsubscribe_task`` leaves it. One forwarder per
watched task relays the live hub's updates (Prefect events) to the room.
Authentication: ``auth={"token": ...}`` or an ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import socketio
from sqlmodel import Session

from facade.config import FacadeSettings
from facade.deps import authenticate, owned_task
from facade.errors import ApiError
from facade.models import User
from facade.routes.ws import legacy_events


def _token(environ: dict[str, Any], auth: Any) -> str | None:
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return auth["token"]
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _client_host(environ: dict[str, Any]) -> str | None:
    scope = environ.get("asgi.scope") or {}
    client = scope.get("client")
    return client[0] if client else environ.get("REMOTE_ADDR")


class LegacySocketServer:
    """Wires an AsyncServer to the app's database and live hub."""

    def __init__(self, app: Any, settings: FacadeSettings) -> None:
        self.app = app
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=list(settings.cors_origins),
            ping_interval=settings.socketio_ping_interval,
            ping_timeout=settings.socketio_ping_timeout,
            logger=False,
        )
        self._forwarders: dict[int, asyncio.Task[None]] = {}
        self._members: dict[int, set[str]] = {}
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", self.on_disconnect)
        self.sio.on("subscribe_task", self.on_subscribe)
        self.sio.on("unsubscribe_task", self.on_unsubscribe)

    def asgi_app(self) -> socketio.ASGIApp:
        return socketio.ASGIApp(self.sio, socketio_path="")

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        state = self.app.state
        with Session(state.engine) as session:
            try:
                user = authenticate(
                    session, state.settings, _token(environ, auth), _client_host(environ)
                )
            except ApiError as exc:
                raise socketio.exceptions.ConnectionRefusedError(exc.error) from None
            # Read before the await: the session then holds no connection while it waits.
            saved = {"user": user.name, "admin": user.is_admin}
        await self.sio.save_session(sid, saved)
        await self.sio.emit("connected", {"message": "Connected to Topup API"}, to=sid)

    async def on_disconnect(self, sid: str, *args: Any) -> None:
        for task_id in [t for t, members in self._members.items() if sid in members]:
            await self._leave(sid, task_id)

    async def on_subscribe(self, sid: str, data: Any) -> dict[str, Any]:
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id < 1:
            return await self._error(sid, "task_id must be a positive integer")
        session_data = await self.sio.get_session(sid)
        state = self.app.state
        refused: str | None = None
        with Session(state.engine) as session:  # no await while it is open
            user = session.get(User, session_data["user"])
            try:
                if user is None:
                    raise ApiError(404, "Task not found")
                owned_task(session, user, task_id)
            except ApiError as exc:
                refused = exc.error
        if refused is not None:
            return await self._error(sid, refused)
        await self.sio.enter_room(sid, f"task_{task_id}")
        self._members.setdefault(task_id, set()).add(sid)
        if task_id not in self._forwarders:
            self._forwarders[task_id] = asyncio.create_task(self._forward(task_id))
        else:
            await self._send_current(sid, task_id)
        return {"success": True, "task_id": task_id}

    async def on_unsubscribe(self, sid: str, data: Any) -> dict[str, Any]:
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if isinstance(task_id, int):
            await self._leave(sid, task_id)
        return {"success": True, "task_id": task_id}

    async def _error(self, sid: str, message: str) -> dict[str, Any]:
        await self.sio.emit("error", {"message": message}, to=sid)
        return {"success": False, "error": message}

    async def _leave(self, sid: str, task_id: int) -> None:
        await self.sio.leave_room(sid, f"task_{task_id}")
        members = self._members.get(task_id, set())
        members.discard(sid)
        if not members:
            self._members.pop(task_id, None)
            forwarder = self._forwarders.pop(task_id, None)
            if forwarder is not None:
                forwarder.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await forwarder

    async def _send_current(self, sid: str, task_id: int) -> None:
        """A client joining a watched room gets the current state at once."""
        async with self.app.state.live.watch(task_id) as queue:
            update = await queue.get()
        for event, data in legacy_events(update, None):
            await self.sio.emit(event, data, to=sid)

    async def _forward(self, task_id: int) -> None:
        previous = None
        async with self.app.state.live.watch(task_id) as queue:
            while True:
                update = await queue.get()
                for event, data in legacy_events(update, previous):
                    await self.sio.emit(event, data, room=f"task_{task_id}")
                previous = update

    async def close(self) -> None:
        for forwarder in self._forwarders.values():
            forwarder.cancel()
        for forwarder in self._forwarders.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
        self._forwarders.clear()
        self._members.clear()
