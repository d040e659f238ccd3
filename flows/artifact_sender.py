"""Prefect artifacts sent by a background thread, off the steps' critical path.

Each artifact is one HTTP request to the Prefect API; made inline, the flow waited for a
table/link artifact and a progress update after every step. The sender queues them and a
daemon thread sends them in order with one API client. The thread runs in a copy of the
caller's context (Prefect settings live in context variables) and every request names the
flow run captured at creation, because the thread has no run context of its own.

``flush`` waits, with a deadline, until the queue is empty: the flow calls it before it
pauses (the operator's form should show everything so far) and when it ends. A failed
request is logged and dropped, never raised into a step: artifacts are a view, the outputs
store is the record.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.artifacts import Artifact
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

log = logging.getLogger("topup.artifacts")

Job = Callable[[Any], None]  # called with the thread's sync Prefect client
_live: weakref.WeakSet[ArtifactSender] = weakref.WeakSet()


class ArtifactSender:
    """One flow run's artifact queue and the thread that drains it."""

    def __init__(self, flow_run_id: str) -> None:
        self.flow_run_id = UUID(flow_run_id)
        self._queue: queue.Queue[tuple[str, Job] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._context = contextvars.copy_context()
        self._thread: threading.Thread | None = None
        self.failures = 0
        _live.add(self)

    # ------------------------------------------------------------------ submit
    def create(self, artifact: Artifact, then: Callable[[UUID], None] | None = None) -> None:
        """Queue the creation of ``artifact`` for this flow run; ``then`` gets its id."""
        request = self._request(artifact)  # formatted now

        def job(client: Any) -> None:
            created = client.create_artifact(request)
            if then is not None:
                then(created.id)

        self.submit(f"create {artifact.type} artifact {artifact.key}", job)

    def create_built(self, what: str, build: Callable[[], list[Artifact]]) -> None:
        """Queue artifacts that are costly to make (a drawn picture): ``build`` runs in the
        thread, so the steps do not wait for it; what it reads is as of when it runs."""

        def job(client: Any) -> None:
            for artifact in build():
                client.create_artifact(self._request(artifact))

        self.submit(what, job)

    def _request(self, artifact: Artifact) -> ArtifactCreate:
        return ArtifactCreate(
            type=artifact.type,
            key=artifact.key,
            description=artifact.description,
            flow_run_id=artifact.flow_run_id or self.flow_run_id,
            task_run_id=artifact.task_run_id,
            data=artifact.format(_sync=True),  # type: ignore[call-arg]
        )

    def update(self, artifact_id: Callable[[], UUID | None], data: Any, description: str) -> None:
        """Queue an update; ``artifact_id`` is read in the thread (set by an earlier job)."""

        def job(client: Any) -> None:
            aid = artifact_id()
            if aid is not None:
                client.update_artifact(
                    artifact_id=aid, artifact=ArtifactUpdate(data=data, description=description)
                )

        self.submit("update artifact", job)

    def submit(self, what: str, job: Job) -> None:
        with self._idle:
            self._pending += 1
        self._start()
        self._queue.put((what, job))

    # ------------------------------------------------------------------ wait
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued artifact was sent (or failed); False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "%d artifact request(s) still queued after %gs", self._pending, timeout
                    )
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> bool:
        """Flush, then let the thread end (a later ``submit`` starts a new one)."""
        done = self.flush(timeout)
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)
        return done

    # ------------------------------------------------------------------ thread
    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._context.run,
                args=(self._drain,),
                name=f"topup-artifacts-{self.flow_run_id}",
                daemon=True,
            )
            self._thread.start()

    def _drain(self) -> None:
        with get_client(sync_client=True) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                what, job = item
                try:
                    job(client)
                except Exception as exc:  # a view only: log, never raise into the flow
                    self.failures += 1
                    log.warning("artifact request failed (%s): %s", what, exc)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()


@atexit.register
def _flush_at_exit() -> None:
    """A run that ended without ``finish`` (a crash in the flow) still sends its queue."""
    for sender in list(_live):
        sender.flush(10.0)
