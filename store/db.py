"""Engine and sessions of the outputs store.

One engine per URL and process, tables created on first use. SQLite gets WAL and a busy
timeout: flow runs in several worker processes write while the facade reads. With WAL,
``synchronous=NORMAL`` skips the fsync per commit (one per step) and stays consistent across
processes and application crashes; only an OS crash or power loss may drop the last commits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlmodel import Session, SQLModel, create_engine

from store.models import STORE_TABLES

ENV_URL = "TOPUP_DATABASE_URL"
DEFAULT_URL = "sqlite:///var/topup.db"

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def database_url() -> str:
    return os.environ.get(ENV_URL) or DEFAULT_URL


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def get_engine(url: str | None = None) -> Engine:
    """The engine of ``url`` (default: ``TOPUP_DATABASE_URL``), tables created once."""
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _make_engine(url)
            SQLModel.metadata.create_all(engine, tables=STORE_TABLES)
            _engines[url] = engine
        return engine


def reset_engines() -> None:
    """Dispose every engine (tests switch databases; a forked process must not share pools)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(get_engine(url)) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
