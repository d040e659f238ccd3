"""The facade for the benchmarks: uvicorn on a free loopback port, in a thread or a process.

Why both: the start-latency benchmark only needs the HTTP path (a thread is enough), the load
benchmark needs the server in its own process so that the load generator, the facade and
Prefect compete for the CPUs the way they do in production.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from sqlmodel import Session

from facade.config import FacadeSettings
from facade.main import create_app
from facade.tokens import issue_token

PROJECT_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(settings: FacadeSettings, user: str, admin: bool = False) -> str:
    from facade.db import create_tables, make_engine

    engine = make_engine(settings.database_url)
    create_tables(engine)
    try:
        with Session(engine) as session:
            value = issue_token(session, user, admin=admin)
            session.commit()
            return value
    finally:
        engine.dispose()


@contextmanager
def in_thread(settings: FacadeSettings) -> Iterator[str]:
    """The facade in a thread of this process; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bench-facade", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the facade did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def in_process(
    settings: FacadeSettings, log: Path, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``uvicorn facade.main:app`` as its own process (settings through the environment)."""
    port = free_port()
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOPUP_", "PREFECT_"))}
    env.update(extra)
    env.update(
        TOPUP_DATABASE_URL=settings.database_url,
        TOPUP_FACADE_PREFECT_API_URL=settings.prefect_api_url,
        TOPUP_DOWNLOADS_DIR=str(settings.downloads_dir),
        PYTHONPATH=str(PROJECT_DIR),
    )
    argv = [sys.executable, "-m", "uvicorn", "facade.main:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, cwd=PROJECT_DIR, env=env, stdout=out, stderr=out, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the facade exited ({proc.returncode}); see {log}")
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the facade did not answer; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
