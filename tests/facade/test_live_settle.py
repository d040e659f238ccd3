"""Live updates after a run's last event (facade.live).

Prefect publishes an event before the transaction that writes the new state commits, so the
read an event triggers may still see the old state. When that event is the run's last (its
end), nothing later corrects the read: watchers kept showing "running" for a run that had
Completed (seen in full CI runs under load, tests/facade/test_outside_runs.py).

The race cannot be produced on demand against a real Prefect server, so this test stands a
small in-process stand-in for the gateway that answers the first read after the final event
with the old state, as the server does when the commit lags. Everything else is the real hub,
watcher, legacy view and a real SQLite database.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from sqlmodel import Session, SQLModel, create_engine

from facade.live import LiveHub
from facade.models import Task
from facade.read_cache import PrefectReadCache


@dataclass
class _Event:
    event: str


class _LaggingGateway:
    """Answers reads from ``states``; the first read after ``lag_next()`` returns the state
    from before the last change (the commit has not landed yet)."""

    def __init__(self, flow_run_id: uuid.UUID) -> None:
        self.cache = PrefectReadCache(0)
        self.flow_run_id = flow_run_id
        self.state = StateType.RUNNING
        self.stale: StateType | None = None
        self.events_out: asyncio.Queue[_Event] = asyncio.Queue()

    def change(self, state: StateType, *, lagging: bool) -> None:
        self.stale = self.state if lagging else None
        self.state = state
        self.events_out.put_nowait(_Event(f"prefect.flow-run.{state.value.title()}"))

    async def read_runs(self, ids: Sequence[str]) -> dict[str, FlowRun]:
        shown, self.stale = (self.stale or self.state), None
        run = FlowRun(
            id=self.flow_run_id,
            name="r",
            flow_id=uuid.uuid4(),
            state=State(type=shown),
            parameters={},
        )
        return {str(self.flow_run_id): run}

    async def task_runs(self, ids: Sequence[str]) -> list[TaskRun]:
        return []

    @contextlib.asynccontextmanager
    async def events(
        self, flow_run_ids: Sequence[str], tags: Sequence[str] = ()
    ) -> AsyncIterator[AsyncIterator[_Event]]:
        async def stream() -> AsyncIterator[_Event]:
            while True:
                yield await self.events_out.get()

        yield stream()


def test_a_final_state_read_too_early_is_corrected_without_another_event(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'facade.db'}")
    SQLModel.metadata.create_all(engine)
    flow_run_id = uuid.uuid4()
    with Session(engine) as s:
        task = Task(
            user_name="carol",
            task_name="t",
            workflow_name="topup-standard",
            workflow_version="1.2.0",
            workflow_id=1,
            flow_run_id=str(flow_run_id),
        )
        s.add(task)
        s.commit()
        task_id = task.id
    assert task_id is not None
    gateway = _LaggingGateway(flow_run_id)

    async def statuses_seen() -> list[str]:
        hub = LiveHub(engine, gateway, settle_seconds=(0.2, 0.5))  # type: ignore[arg-type]
        seen: list[str] = []
        async with hub.watch(task_id) as updates:

            async def next_status() -> str:
                update: dict[str, Any] = await asyncio.wait_for(updates.get(), 10)
                seen.append(update["status"])
                return str(update["status"])

            assert await next_status() == "running"
            # the run ends; the read its final event triggers still sees Running
            gateway.change(StateType.COMPLETED, lagging=True)
            while await next_status() != "success":
                pass
        await hub.close()
        return seen

    seen = asyncio.run(statuses_seen())
    assert seen == ["running", "success"]
    assert gateway.stale is None  # the stale answer was given (and then corrected)
