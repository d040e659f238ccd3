"""``prefect server start`` on SQLite with every server transaction begun IMMEDIATE.

Why: the embedded Prefect server answered 503 "database is locked" to writes while runs were
progressing (an operator's Resume in the UI failed; Prefect's own clients retry, the UI does
not). Prefect already opens SQLite in WAL mode with a 60 s busy timeout, so the failing
writes are not waiting too briefly: its transactions begin DEFERRED (except the orchestration
ones), and a deferred transaction that has read and then wants to write after another
connection of the server's pool committed gets SQLITE_BUSY at once — SQLite cannot upgrade a
stale read snapshot, and no busy timeout applies. Prefect's comment in
``AioSqliteConfiguration.setup_sqlite`` names the cure: IMMEDIATE transactions, which take the
write lock at BEGIN and so wait (busy timeout) instead of failing. No setting selects it, so
this launcher sets it before running Prefect's own CLI in the same process (the server runs
in the foreground, in this process). Plain reads outside transactions are unaffected and stay
concurrent under WAL. bench/sqlite_lock.py measures before and after.

    python -m topup_cli.sqlite_server server start --host 127.0.0.1 --port 4200
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

_PATCHED = False


def begin_immediate() -> None:
    """Make every transaction of Prefect's SQLite configuration begin IMMEDIATE."""
    global _PATCHED
    if _PATCHED:
        return
    from prefect.server.database.configurations import AioSqliteConfiguration

    deferred_or_immediate = AioSqliteConfiguration.begin_transaction

    @asynccontextmanager
    async def immediate(
        self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
    ) -> AsyncGenerator[Any, None]:
        async with deferred_or_immediate(self, session, with_for_update=True) as tx:
            yield tx

    AioSqliteConfiguration.begin_transaction = immediate  # type: ignore[method-assign]
    _PATCHED = True


def main() -> None:
    begin_immediate()
    from prefect.cli import app

    app()


if __name__ == "__main__":
    main()
