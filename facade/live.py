"""Live task updates fed by Prefect's event stream.

Why a hub: several clients (WebSocket, Socket.IO rooms) may watch the same task; one watcher
per task subscribes to the events of the task's flow runs and recomputes the task's view only
when Prefect reports a state change, then fans the update out. No polling loop: between
events the watcher sleeps on the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Engine
from sqlmodel import Session

from facade import legacy
from facade.models import Task
from facade.prefect_gateway import PrefectGateway
from facade.snapshots import snapshot

log = logging.getLogger("topup.facade.live")

STATUS_MESSAGES = {
    legacy.PENDING: "Task created",
    legacy.RUNNING: "Task running",
    legacy.PAUSING: "Task pausing after the running step",
    legacy.PAUSED: "Task paused",
    legacy.SUCCESS: "Task completed successfully",
    legacy.FAILED: "Task failed",
    legacy.CANCELLED: "Task cancelled",
}


def now_iso() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def update_from(task_id: int, view: legacy.TaskView, cause: str) -> dict[str, Any]:
    """The update sent to watchers: the legacy status/progress fields plus the cause."""
    message = STATUS_MESSAGES[view.status]
    if view.status == legacy.FAILED and view.error_message:
        message = f"Task failed: {view.error_message}"
    if view.status == legacy.PAUSED and view.waiting_for_input:
        message = f"Task paused at {view.current_step}, waiting for an operator decision"
    return {
        "task_id": task_id,
        "status": view.status,
        "progress": view.progress,
        "current_step": view.current_step,
        "message": message,
        "timestamp": now_iso(),
        "cause": cause,
    }


async def _next_event(events: AsyncIterator[Any]) -> Any:
    return await events.__anext__()


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for its end, without swallowing a cancellation of the caller
    itself: a watcher stopped during that wait must stop, not go round its loop again."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:  # the task's own failure: it has ended, which is all we wait for
        pass


class _Watcher:
    """One task: follows its current flow run's events and publishes changed views."""

    def __init__(self, hub: LiveHub, task_id: int) -> None:
        self.hub = hub
        self.task_id = task_id
        self.queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self.last: dict[str, Any] | None = None
        self.restart = asyncio.Event()
        self.reported: legacy.TaskView | None = None
        self.runner: asyncio.Task[None] | None = None
        self.backoff = hub.reconnect_seconds

    def start(self) -> None:
        self.runner = asyncio.create_task(self._run(), name=f"live-task-{self.task_id}")

    async def stop(self) -> None:
        if self.runner is not None:
            self.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.runner

    def _load(self) -> Task | None:
        with Session(self.hub.engine) as session:
            return session.get(Task, self.task_id)

    async def _publish(self, cause: str) -> Task | None:
        task = self._load()
        if task is None:
            return None
        if task.flow_run_id:
            # This event may reach us before the cache feed has seen it: read Prefect afresh
            # rather than publish a view from before the change (cached or still in flight).
            self.hub.gateway.cache.changed(str(UUID(task.flow_run_id)))
        snap = await snapshot(self.hub.gateway, task, history=False)
        self._send(update_from(self.task_id, snap.view, cause))
        return task

    def _send(self, update: dict[str, Any]) -> None:
        key = ("status", "progress", "current_step", "message")
        if self.last is None or any(self.last[k] != update[k] for k in key):
            self.last = update
            for queue in list(self.queues):
                queue.put_nowait(update)

    async def _follow(self) -> None:
        """Publish the current view, then one update per Prefect event of the task's runs."""
        task = await self._publish("snapshot")
        if task is None:  # deleted: nothing more will happen
            await asyncio.Event().wait()
            return
        runs = [task.flow_run_id] if task.flow_run_id else []
        # The tag also catches flow runs another facade process created for this task.
        async with self.hub.gateway.events(runs, tags=[f"facade-task:{self.task_id}"]) as events:
            self.backoff = self.hub.reconnect_seconds
            # Anything that happened between the first read and the subscription.
            await self._publish("subscribed")
            await self._relay(events)

    async def _relay(self, events: AsyncIterator[Any]) -> None:
        """One publish per event, then re-reads after a quiet spell.

        Prefect publishes an event before its transaction commits, so the read an event
        triggers may still see the old state; when that event was the run's last (its end),
        no later event would correct it. After each burst of events the view is read again
        ``settle_seconds`` later (each delay counted from the previous re-read), unless a new
        event comes first.
        """
        upcoming = asyncio.ensure_future(_next_event(events))
        try:
            pending: tuple[float, ...] = ()
            while True:
                timeout = pending[0] if pending else None
                done, _ = await asyncio.wait({upcoming}, timeout=timeout)
                if not done:
                    pending = pending[1:]
                    await self._publish("settled")
                    continue
                event = upcoming.result()
                upcoming = asyncio.ensure_future(_next_event(events))
                await self._publish(event.event)
                pending = self.hub.settle_seconds
        finally:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await upcoming

    async def _run(self) -> None:
        self.backoff = self.hub.reconnect_seconds
        while True:
            self.restart.clear()
            follow = asyncio.create_task(self._follow())
            waiter = asyncio.create_task(self.restart.wait())
            done, pending = await asyncio.wait({follow, waiter}, return_when=FIRST_COMPLETED)
            for t in pending:
                await _cancel_and_wait(t)
            if waiter in done:
                # What the API just answered goes out first, after the cancelled read (which
                # may be older) and before the fresh one: a short-lived "pausing" is not lost.
                reported, self.reported = self.reported, None
                if reported is not None:
                    self._send(update_from(self.task_id, reported, "request"))
                continue  # re-read at once
            error = follow.exception()
            if error is not None:
                log.warning("live updates of task %s interrupted: %r", self.task_id, error)
            # Back off before resubscribing (Prefect down), but wake up on a refresh.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.restart.wait(), self.backoff)
            self.backoff = min(self.backoff * 2, 30.0)


class LiveHub:
    """Watchers keyed by task id, shared by every client that watches the task."""

    def __init__(
        self,
        engine: Engine,
        gateway: PrefectGateway,
        reconnect_seconds: float = 1.0,
        settle_seconds: tuple[float, ...] = (1.0, 4.0, 15.0),
    ) -> None:
        self.engine = engine
        self.gateway = gateway
        self.reconnect_seconds = reconnect_seconds
        # re-reads after the last event of a burst (see _Watcher._relay)
        self.settle_seconds = settle_seconds
        self._watchers: dict[int, _Watcher] = {}

    @contextlib.asynccontextmanager
    async def watch(self, task_id: int) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of updates for ``task_id``: the current state first, then each change."""
        watcher = self._watchers.get(task_id)
        if watcher is None:
            watcher = self._watchers[task_id] = _Watcher(self, task_id)
            watcher.start()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        if watcher.last is not None:
            queue.put_nowait(watcher.last)
        watcher.queues.add(queue)
        try:
            yield queue
        finally:
            watcher.queues.discard(queue)
            if not watcher.queues and self._watchers.get(task_id) is watcher:
                del self._watchers[task_id]
                await watcher.stop()

    def refresh(self, task_id: int, reported: legacy.TaskView | None = None) -> None:
        """This process just changed the task (start, pause, resume, cancel): watchers re-read
        it at once and follow its current flow run (a rerun creates a new one). ``reported``
        is the view the API answered with; watchers publish it before re-reading, so a
        status that lasts less than one read (e.g. "pausing") still reaches them."""
        watcher = self._watchers.get(task_id)
        if watcher is not None:
            if reported is not None:
                watcher.reported = reported
            watcher.restart.set()

    async def close(self) -> None:
        watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            await watcher.stop()
