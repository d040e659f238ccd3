"""``/api/tasks/<id>/ws``: a WebSocket streaming one task's status and progress.

Messages are JSON ``{"event": "task_status" | "task_progress", "data": {...}}`` with the legacy
Socket.IO payloads. The current state is sent first, then each change Prefect reports.
Authentication: ``Authorization: Bearer <token>`` header, or ``?token=`` for browsers (which
cannot set headers on WebSockets).
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlmodel import Session

from facade.deps import authenticate, owned_task
from facade.errors import ApiError

router = APIRouter(tags=["live"])
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404


def legacy_events(update: dict, previous: dict | None) -> list[tuple[str, dict]]:
    """The legacy events one update produces (status and/or progress changed)."""
    events = []
    status_changed = previous is None or any(
        previous[k] != update[k] for k in ("status", "message", "current_step")
    )
    if status_changed:
        events.append(
            (
                "task_status",
                {
                    "task_id": update["task_id"],
                    "status": update["status"],
                    "message": update["message"],
                    "current_step": update["current_step"],
                    "timestamp": update["timestamp"],
                },
            )
        )
    if previous is None or previous["progress"] != update["progress"]:
        events.append(
            (
                "task_progress",
                {
                    "task_id": update["task_id"],
                    "progress": update["progress"],
                    "current_step": update["current_step"],
                    "timestamp": update["timestamp"],
                },
            )
        )
    return events


def _bearer(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return websocket.query_params.get("token")


@router.websocket("/api/tasks/{task_id}/ws")
async def task_updates(websocket: WebSocket, task_id: int) -> None:
    app = websocket.app
    host = websocket.client.host if websocket.client else None
    # Accepted first so that a refusal carries a close code the client can read.
    await websocket.accept()
    refusal: tuple[int, str] | None = None
    with Session(app.state.engine) as session:  # no await while it is open (facade.db)
        try:
            user = authenticate(session, app.state.settings, _bearer(websocket), host)
            try:
                owned_task(session, user, task_id)
            except ApiError:
                refusal = (CLOSE_NOT_FOUND, "Task not found")
        except ApiError:
            refusal = (CLOSE_UNAUTHORIZED, "Authentication required")
    if refusal is not None:
        await websocket.close(code=refusal[0], reason=refusal[1])
        return
    previous = None
    async with app.state.live.watch(task_id) as queue:
        # Watch for the client leaving while we wait on updates.
        receiver = asyncio.create_task(_drain(websocket))
        try:
            while not receiver.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    break
                update = getter.result()
                for event, data in legacy_events(update, previous):
                    await websocket.send_json({"event": event, "data": data})
                previous = update
        except WebSocketDisconnect:
            pass
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver


async def _drain(websocket: WebSocket) -> None:
    """Ignore client messages; return when the client disconnects."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()
