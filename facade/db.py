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


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so readers never block writers."""
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
            pool_size=20,
            max_overflow=80,
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
    return create_engine(url, pool_pre_ping=True)


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
