"""The facade's short-lived copy of Prefect reads (facade.read_cache, PrefectGateway).

The gateway here points at a port where nothing listens: a read that is not answered from
the cache fails for real, so the tests see exactly when Prefect would have been asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from prefect.client.schemas.objects import FlowRun, TaskRun

from facade.prefect_gateway import PrefectGateway
from facade.read_cache import PrefectReadCache
from tests.facade.served import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _flow_run() -> FlowRun:
    return FlowRun(id=uuid.uuid4(), name="r", flow_id=uuid.uuid4())


def _task_run(flow_run: FlowRun, key: str) -> TaskRun:
    return TaskRun(
        id=uuid.uuid4(), name=f"{key}-x", flow_run_id=flow_run.id, task_key=key, dynamic_key="0"
    )


def test_entries_expire_after_ttl_and_can_be_forgotten() -> None:
    clock = Clock()
    cache = PrefectReadCache(1.0, clock)
    a, b = _flow_run(), _flow_run()
    cache.runs.put(str(a.id), a)
    cache.keep_task_runs([str(a.id), str(b.id)], [_task_run(a, "step1_1")])
    found, missing = cache.runs.split([str(a.id), str(b.id)])
    assert list(found) == [str(a.id)] and missing == [str(b.id)]
    tasks, missing = cache.task_runs.split([str(a.id), str(b.id)])
    assert missing == [] and len(tasks[str(a.id)]) == 1 and tasks[str(b.id)] == []
    clock.now += 0.99
    assert cache.runs.split([str(a.id)])[1] == []
    cache.forget(str(a.id))
    assert cache.runs.split([str(a.id)])[1] == [str(a.id)]
    assert cache.task_runs.split([str(a.id)])[1] == [str(a.id)]
    clock.now += 0.02
    assert cache.task_runs.split([str(b.id)])[1] == [str(b.id)]


@contextlib.asynccontextmanager
async def _gateway(ttl: float) -> AsyncIterator[PrefectGateway]:
    """An open gateway whose Prefect URL has nothing listening."""
    gw = PrefectGateway(f"http://127.0.0.1:{free_port()}/api", read_ttl=ttl)
    await gw.open()
    try:
        yield gw
    finally:
        await gw.close()


def test_gateway_answers_fresh_reads_without_prefect_and_rereads_after_a_change() -> None:
    async def scenario() -> None:
        async with _gateway(30.0) as gw:
            run = _flow_run()
            rid = str(run.id)
            gw.cache.runs.put(rid, run)
            gw.cache.keep_task_runs([rid], [_task_run(run, "step1_2"), _task_run(run, "a")])
            assert (await gw.read_runs([rid]))[rid] is run
            assert len(await gw.task_runs([rid])) == 2
            # A change made through the gateway drops the copy, even when Prefect refused it.
            with pytest.raises(Exception):  # noqa: B017 - nothing listens: connection error
                await gw.update_parameters(rid, {"date": "250624"})
            with pytest.raises(Exception):  # noqa: B017
                await gw.read_runs([rid])

    asyncio.run(scenario())


def test_a_read_in_flight_during_a_change_is_not_served_after_it() -> None:
    """A live watcher's read starts, the facade suspends the run, the read lands: the pause
    answer must not reuse that read (it said "running" once in CI instead of "pausing")."""

    async def scenario() -> None:
        async with _gateway(30.0) as gw:
            run = _flow_run()
            rid = str(run.id)
            read_started = gw.cache.clock()  # the watcher's read begins ...
            with pytest.raises(Exception):  # noqa: B017 - nothing listens: connection error
                await gw.suspend(rid)  # ... the facade changes the run ...
            gw.cache.runs.put(rid, run, read_started)  # ... and the old answer lands.
            gw.cache.keep_task_runs([rid], [], read_started)
            assert gw.cache.runs.split([rid]) == ({}, [rid])
            assert gw.cache.task_runs.split([rid]) == ({}, [rid])
            with pytest.raises(Exception):  # noqa: B017 - so it asks Prefect again
                await gw.read_runs([rid])
            # A read that starts after the change is served again.
            gw.cache.runs.put(rid, run)
            assert (await gw.read_runs([rid]))[rid] is run

    asyncio.run(scenario())


def test_ttl_zero_always_asks_prefect() -> None:
    async def scenario() -> None:
        async with _gateway(0.0) as gw:
            run = _flow_run()
            gw.cache.runs.put(str(run.id), run)  # ignored: a zero TTL never serves
            with pytest.raises(Exception):  # noqa: B017
                await gw.read_runs([str(run.id)])
            assert await gw.read_runs([]) == {} and await gw.task_runs([]) == []

    asyncio.run(scenario())
