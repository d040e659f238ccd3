"""Many concurrent readers on one facade process never freeze it (facade.db.request_slots).

Found by ``python -m bench ha``: with the facade on PostgreSQL (SQLAlchemy's default pool of
5 + 10), 16 readers of ``/api/tasks/{id}/progress`` through HAProxy got 13 req/s instead of
~300, and HAProxy took the process out. A request keeps its connection while it awaits
Prefect; the 16th checked one out of the empty pool on the event loop and blocked it, so no
request could finish and give its connection back (SQLAlchemy's pool timeout is 30 s).

Here the same thing on a smaller scale, for real: the facade on a PostgreSQL database of its
own with a pool of 3, the session's real Prefect server (every read goes to it: no read
cache), and 24 concurrent readers over HTTP. Without the request slots every reader beyond
the third blocked the event loop until the pool timed out, and the answers were 500s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.states import Running
from sqlmodel import Session

from facade.config import FacadeSettings
from facade.db import create_tables, make_engine, request_slots
from facade.models import Task
from facade.task_create import workflow_ref
from facade.tokens import ensure_user
from facade.workflows import resolve
from tests.facade.served import Served, serve
from topup_cli.ha import drop_database, ensure_database

pytestmark = [pytest.mark.postgres]

READERS = 24
POOL = (3, 0)


@flow(name="facade-pool-probe")
def pool_probe() -> None:
    """Never run: its flow runs only give the facade's reads something to read in Prefect."""


@pytest.fixture
def facade_database() -> Iterator[str]:
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/topup_slots_{uuid.uuid4().hex[:10]}"
    ensure_database(url)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def probe_run(stack: Any) -> Iterator[str]:
    """A Running flow run of a flow outside the project (the facade does not adopt it)."""
    with stack.sync_client() as client:
        run = client.create_flow_run(pool_probe, state=Running(), name="pool-probe")
    try:
        yield str(run.id)
    finally:
        with stack.sync_client() as client:
            client.delete_flow_run(run.id)


@pytest.fixture
def small_pool_facade(
    stack: Any, facade_database: str, probe_run: str, tmp_path: Path
) -> Iterator[tuple[Served, int]]:
    settings = FacadeSettings(
        database_url=facade_database,
        prefect_api_url=stack.api_url,
        downloads_dir=tmp_path / "downloads",
        prefect_read_ttl_seconds=0,
        database_pool_size=POOL[0],
        database_max_overflow=POOL[1],
    )
    engine = make_engine(facade_database)
    create_tables(engine)
    with Session(engine) as session:
        ensure_user(session, "alice")
        defn = resolve("topup-standard", None)
        task = Task(
            user_name="alice",
            task_name="pool probe",
            workflow_name=defn.name,
            workflow_version=defn.version,
            workflow_id=workflow_ref(session, defn),
            parameters={"date": "250624", "round": "round18"},
            flow_run_id=probe_run,
        )
        session.add(task)
        session.commit()
        task_id = task.id
    engine.dispose()
    assert task_id is not None
    with serve(settings) as served:
        yield served, task_id


async def _read_together(base: str, headers: dict[str, str], path: str) -> list[int]:
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        answers = await asyncio.gather(*(client.get(path) for _ in range(READERS)))
    return [a.status_code for a in answers]


def test_more_readers_than_connections_all_get_answers(
    small_pool_facade: tuple[Served, int],
) -> None:
    served, task_id = small_pool_facade
    assert request_slots(*POOL) < READERS  # the readers really outnumber the connections
    with served.client("alice") as c:
        headers = {"Authorization": c.headers["Authorization"]}
        first = c.get(f"/api/tasks/{task_id}/progress")
        assert first.status_code == 200, first.text
    statuses = asyncio.run(
        _read_together(served.base_url, headers, f"/api/tasks/{task_id}/progress")
    )
    assert statuses == [200] * READERS
    with served.client("alice") as c:
        assert c.get("/api/health").status_code == 200
