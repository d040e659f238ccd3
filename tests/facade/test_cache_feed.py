"""The read cache kept fresh by Prefect's event stream (facade.read_cache, facade.cache_feed).

The live test runs the facade over real HTTP on the session's real Prefect server with a read
cache that, without events, would serve a flow run's copy for ten minutes: a state change made
directly in Prefect (not through the facade) must still show up within seconds, which only the
event stream can cause.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.events.schemas.events import Event
from sqlmodel import Session

from facade.cache_feed import flow_run_ids
from facade.config import FacadeSettings
from facade.models import Task
from facade.read_cache import PrefectReadCache
from tests.facade.served import serve, wait_for

LIVE_TTL = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _run() -> FlowRun:
    return FlowRun(id=uuid.uuid4(), name="r", flow_id=uuid.uuid4())


def test_events_drop_copies_and_reads_that_raced_them_are_not_served() -> None:
    clock = Clock()
    cache = PrefectReadCache(1.0, clock, live_ttl=LIVE_TTL, settle=5.0)
    run = _run()
    key = str(run.id)
    cache.runs.put(key, run)
    clock.now += 2
    assert cache.runs.split([key])[1] == [key]  # no event stream: the short TTL applies
    cache.set_live(True)
    cache.runs.put(key, run)
    clock.now += 60
    assert key in cache.runs.split([key])[0]  # live: kept until Prefect says it changed
    started = clock.now
    clock.now += 0.1
    cache.changed(key)  # an event arrives while a read is in flight
    assert cache.runs.split([key])[1] == [key]
    clock.now += 0.1
    cache.runs.put(key, run, read_started=started)
    assert cache.runs.split([key])[1] == [key]  # read before the event: never served
    cache.runs.put(key, run)  # read just after the event: may predate Prefect's commit
    clock.now += 0.5
    assert key in cache.runs.split([key])[0]
    clock.now += 0.6
    assert cache.runs.split([key])[1] == [key]
    clock.now += 5
    cache.runs.put(key, run)  # read well after the event: the long TTL again
    clock.now += 60
    assert key in cache.runs.split([key])[0]
    cache.set_live(False)  # stream lost: nothing read before is trusted
    assert cache.runs.split([key])[1] == [key]


def test_task_run_events_name_their_flow_run() -> None:
    flow_run, task_run = uuid.uuid4(), uuid.uuid4()
    event = Event(
        occurred="2026-01-01T00:00:00Z",
        event="prefect.task-run.Completed",
        resource={"prefect.resource.id": f"prefect.task-run.{task_run}"},
        related=[
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run}",
                "prefect.resource.role": "flow-run",
            },
            {"prefect.resource.id": "prefect.tag.x", "prefect.resource.role": "tag"},
        ],
        id=uuid.uuid4(),
    )
    assert flow_run_ids(event) == {str(flow_run)}


def _running_flow_run(prefect_stack: Any) -> FlowRun:
    from prefect.states import Running

    from flows.topup_standard import topup_standard

    with prefect_stack.sync_client() as client:
        return client.create_flow_run(
            topup_standard,
            parameters={"date": "250624", "round": "round18"},
            state=Running(),
            name=f"cache-feed-{uuid.uuid4().hex[:6]}",
        )


def test_a_change_made_in_prefect_shows_at_once_despite_a_long_ttl(
    prefect_stack: Any, tmp_path: Path
) -> None:
    from prefect.states import Failed

    settings = FacadeSettings(
        database_url=f"sqlite:///{tmp_path / 'facade.db'}",
        prefect_api_url=prefect_stack.api_url,
        downloads_dir=tmp_path,
        prefect_read_ttl_seconds=1.0,
        prefect_live_read_ttl_seconds=LIVE_TTL,
    )
    flow_run = _running_flow_run(prefect_stack)
    with serve(settings) as served, served.client("alice") as http:
        app: Any = served.app
        created = http.post(
            "/api/tasks",
            json={
                "workflow_name": "topup-standard",
                "parameters": {"date": "250624", "round": "round18"},
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        with Session(app.state.engine) as session:  # the task was started elsewhere
            task = session.get(Task, task_id)
            assert task is not None
            task.flow_run_id = str(flow_run.id)
            session.add(task)
            session.commit()
        cache = app.state.gateway.cache
        key = str(flow_run.id)

        def progress() -> dict[str, Any]:
            response = http.get(f"/api/tasks/{task_id}/progress")
            assert response.status_code == 200, response.text
            return response.json()

        def cached_for_long() -> bool:
            # Poll until the copy the facade serves would live LIVE_TTL without an event
            # (the stream is up and the run's creation events have settled).
            assert progress()["status"] == "running"
            hit = cache.runs._data.get(key)
            return hit is not None and cache.ttl_of(key, hit[0]) == LIVE_TTL

        wait_for(cached_for_long, timeout=60, interval=0.5, what="a long-lived cached copy")
        with prefect_stack.sync_client() as client:
            client.set_flow_run_state(flow_run.id, Failed(message="failed in Prefect"), force=True)
        # Well inside LIVE_TTL: only the event can have dropped the copy.
        body = wait_for(
            lambda: (p := progress())["status"] == "failed" and p,
            timeout=30,
            what="the facade to show the failure",
        )
        assert body["task_id"] == task_id


def test_concurrent_requests_for_one_run_share_one_prefect_read(prefect_stack: Any) -> None:
    import asyncio

    from facade.prefect_gateway import PrefectGateway

    flow_run = _running_flow_run(prefect_stack)
    key = str(flow_run.id)

    async def scenario() -> None:
        gw = PrefectGateway(prefect_stack.api_url, read_ttl=1.0, live_read_ttl=LIVE_TTL)
        await gw.open()
        try:
            # Count the real requests (each one still goes to the real Prefect server).
            calls = {"runs": 0, "task_runs": 0}
            client: Any = gw.client
            read_runs, read_task_runs = client.read_flow_runs, client.read_task_runs

            async def counted_runs(**kw: Any) -> Any:
                calls["runs"] += 1
                return await read_runs(**kw)

            async def counted_task_runs(**kw: Any) -> Any:
                calls["task_runs"] += 1
                return await read_task_runs(**kw)

            client.read_flow_runs, client.read_task_runs = counted_runs, counted_task_runs
            answers = await asyncio.gather(*(gw.read_runs([key]) for _ in range(8)))
            assert all(a[key].id == flow_run.id for a in answers)
            assert calls["runs"] == 1
            await asyncio.gather(*(gw.task_runs([key]) for _ in range(8)))
            assert calls["task_runs"] == 1
        finally:
            await gw.close()

    asyncio.run(scenario())
