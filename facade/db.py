"""Engine and sessions for the facade tables.

Why only our tables are created: the database is shared with the outputs store, whose tables
belong to the flows; the facade must never create or alter them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, event, text
from sqlmodel import Session, SQLModel, create_engine

from facade.models import FACADE_TABLES

# Connections a request may not take: the Socket.IO handlers, the live watchers and the
# adopter open their own sessions beside the requests'.
RESERVED_CONNECTIONS = 2


def pool_limits(url: str, pool_size: int | None, max_overflow: int | None) -> tuple[int, int]:
    """Pool size and overflow for ``url``: the given ones, else the backend's defaults."""
    sqlite = url.startswith("sqlite")
    return (
        pool_size if pool_size is not None else (20 if sqlite else 5),
        max_overflow if max_overflow is not None else (80 if sqlite else 10),
    )


def request_slots(pool_size: int, max_overflow: int) -> int:
    """How many requests may hold a session at once (``deps.get_session``).

    Why a limit: a request keeps its connection while it awaits Prefect, and a synchronous
    pool check-out on an exhausted pool blocks the event loop itself: no request could finish
    and give its connection back, the health check timed out, HAProxy took the process out
    (bench ha, 16 readers on one facade on PostgreSQL: 13 req/s instead of ~300). Requests
    beyond the limit wait on an asyncio semaphore instead, which blocks nothing.
    """
    return max(1, pool_size + max_overflow - RESERVED_CONNECTIONS)


def make_engine(url: str, pool_size: int | None = None, max_overflow: int | None = None) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so readers never block writers."""
    size, overflow = pool_limits(url, pool_size, max_overflow)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A request keeps its connection while it awaits Prefect; with SQLAlchemy's default
        # pool (5 + 10) the 16th concurrent request waited 30 s and failed with a 500.
        # SQLite connections are cheap file handles, so the pool is sized for bursts.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # A local file cannot drop the connection; a pre-ping was a query per request.
            pool_pre_ping=False,
            pool_size=size,
            max_overflow=overflow,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL makes NORMAL durable against application crashes; commits skip an fsync.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=size, max_overflow=overflow)


def create_tables(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=FACADE_TABLES)
    # create_all skips the indexes of tables that already exist: add ones added since.
    for table in FACADE_TABLES:
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session
