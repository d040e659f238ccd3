"""The outputs store: idempotent upserts, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import repository
from store.db import reset_engines

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _exercise(url: str) -> None:
    repository.start_workflow_run(
        flow_run_id="r1",
        flow_name="topup-standard",
        workflow="topup-standard",
        version="1.0.0",
        date="250624",
        round="round18",
        parameters={"date": "250624"},
        url=url,
    )
    row = {"path": "/a/b.png", "size": 3, "sha256": "a" * 64, "role": "output", "run": 7}
    kw = {"flow_run_id": "r1", "step_id": "step1_1", "task_name": "step1_1", "label": "1.1"}
    repository.record_step(outcome="failed", files=[row], url=url, **kw)  # type: ignore[arg-type]
    repository.record_step(  # type: ignore[arg-type]
        outcome="success",
        files=[{**row, "size": 4}],
        runs_complete=[7],
        url=url,
        data={"ist": {"7": [1, 2, 3]}},
        **kw,
    )
    repository.record_step(  # the same result again (a cached step of a resumed run)
        outcome="success",
        files=[{**row, "size": 4}],
        runs_complete=[7],
        url=url,
        data={"ist": {"7": [1, 2, 3]}},
        **kw,  # type: ignore[arg-type]
    )
    repository.record_decision(
        flow_run_id="r1",
        step_id="step7",
        kind="approval",
        decision="approve",
        decided_by="alice",
        url=url,
    )
    repository.finish_workflow_run("r1", "completed", url=url)

    outs = repository.outputs("r1", url=url)
    assert [(o.name, o.size, o.run, o.sha256) for o in outs] == [("b.png", 4, 7, "a" * 64)]
    (step,) = repository.step_runs("r1", url=url)
    assert step.outcome == "success" and step.attempts == 2 and step.runs_complete == [7]
    assert step.data == {"ist": {"7": [1, 2, 3]}}
    assert [d.decided_by for d in repository.decisions("r1", url=url)] == ["alice"]
    wf = repository.workflow_run("r1", url=url)
    assert wf is not None and wf.status == "completed" and wf.finished_at is not None
    assert repository.outputs("other", url=url) == []


def test_store_on_sqlite(tmp_path: Path) -> None:
    try:
        _exercise(f"sqlite:///{tmp_path / 'store.db'}")
    finally:
        reset_engines()


@pytest.fixture
def pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    name = f"topup_store_test_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            reset_engines()
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_store_on_postgresql(pg_url: str) -> None:
    _exercise(pg_url)
