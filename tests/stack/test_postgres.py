"""The stack's Prefect server on PostgreSQL (the set-up for scale) instead of SQLite."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from topup_cli.processes import alive
from topup_cli.stack import PrefectStack, StackSettings

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards."""
    name = f"topup_stack_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_server_on_postgresql_serves_the_pool_and_limits(empty_database: str) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="topup-stack-pg-", dir="/tmp"))
    stack = PrefectStack(
        StackSettings(
            data_dir=data_dir,
            server_database_url=SecretStr(empty_database),
            rounds=["round18"],
        )
    )
    try:
        stack.start(deploy=False, worker=False)
        assert not (data_dir / "prefect.db").exists(), "the server fell back to SQLite"

        async def read() -> tuple[str, int]:
            async with stack.client() as client:
                pool = await client.read_work_pool("topup-pool")
                limit = await client.read_global_concurrency_limit_by_name("topup-round-round18")
                return pool.type, limit.limit

        assert asyncio.run(read()) == ("process", 1)
        # Prefect's own tables landed in that database.
        dsn = empty_database.replace("postgresql+asyncpg", "postgresql")
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM work_pool WHERE name = 'topup-pool'")
            assert row.fetchone() == (1,)
        assert stack.server is not None
        tree = stack.server.tree()
        assert tree
        assert stack.stop()
        assert not any(alive(k) for k in tree)
        assert not stack.healthy(timeout=0.5)
        # The URL (it may hold a password) is not written to the logs.
        assert empty_database not in (stack.log_dir / "server.log").read_text()
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
