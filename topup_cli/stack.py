"""The Prefect runtime as real processes: server, work pool and limits, deployments, worker.

Why: flows must be exercised (and demonstrated) the way production runs them — a Prefect
server, deployments created by ``prefect deploy --all`` from ``prefect.yaml``, and a process
worker that starts each flow run as its own process — not in-process. ``PrefectStack`` owns
those processes: each starts in its own process group with its output in ``<data_dir>/logs``,
and ``stop()`` ends every one of them, including the flow-run processes the worker started in
sessions of their own.

Every subprocess gets the API URL explicitly and none of the caller's ``PREFECT_*`` variables,
so a test session that also runs ``prefect_test_harness`` (which rewrites the in-process
settings) cannot leak into the stack. In-process callers use ``client()`` /
``sync_client()`` or ``api_settings()``.

    python -m topup_cli.stack --data-dir var/stack --sites-dir var/sites   # foreground

``StackSettings`` and what each process is given (environment, server command line) are in
``topup_cli/stack_settings.py``; the names used elsewhere are imported here so that
``from topup_cli.stack import ...`` keeps working.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from deployments.notifications import NotificationSettings
from deployments.setup import SetupReport
from deployments.setup import setup as setup_pool_and_limits
from topup_cli import stack_settings
from topup_cli.health import http_ok
from topup_cli.processes import ManagedProcess
from topup_cli.stack_settings import (
    HOST,
    PROJECT_DIR,
    StackSettings,
    deployment_names,
    free_port,
)

__all__ = [
    "HOST",
    "PROJECT_DIR",
    "PrefectStack",
    "StackError",
    "StackSettings",
    "deployment_names",
    "free_port",
]


class StackError(RuntimeError):
    """A process of the stack did not start, or a set-up command failed."""


def run_command(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    """A one-off command of the stack (set-up, migration): no stdin, a session of its own,
    its output captured; StackError "<what> timed out" after ``timeout`` seconds."""
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} timed out after {exc.timeout}s") from exc


# Stacks not stopped by their owner are stopped at interpreter exit.
_LIVE: set[PrefectStack] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        stacks = list(_LIVE)
    for stack in stacks:
        stack.stop()


class PrefectStack:
    """One Prefect server, its pool/limits/deployments, and process workers."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings.resolved()
        self.port = self.settings.port or free_port(self.settings.host)
        self.server: ManagedProcess | None = None
        self.workers: dict[str, ManagedProcess] = {}
        self.worker_specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self._worker_count = 0

    # ---------------------------------------------------------------- paths and env
    @property
    def api_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/api"

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def prefect_home(self) -> Path:
        return stack_settings.prefect_home(self.settings)

    @property
    def sites_dir(self) -> Path:
        assert self.settings.sites_dir is not None
        return self.settings.sites_dir

    @property
    def results_dir(self) -> Path:
        assert self.settings.results_dir is not None
        return self.settings.results_dir

    @property
    def topup_database_url(self) -> str:
        assert self.settings.topup_database_url is not None
        return self.settings.topup_database_url

    def _base_env(self) -> dict[str, str]:
        return stack_settings.base_env(self.settings, self.api_url)

    def server_env(self) -> dict[str, str]:
        return stack_settings.server_env(self.settings, self.api_url)

    def worker_env(self) -> dict[str, str]:
        """The worker's environment, which every flow run it starts inherits."""
        return stack_settings.worker_env(self.settings, self.api_url)

    # ------------------------------------------------------------------ clients
    def client(self) -> PrefectClient:
        """An async client of this server (use as ``async with stack.client() as c``)."""
        return PrefectClient(api=self.api_url)

    def sync_client(self) -> SyncPrefectClient:
        """A sync client of this server (use as ``with stack.sync_client() as c``)."""
        return SyncPrefectClient(api=self.api_url)

    @contextlib.contextmanager
    def api_settings(self) -> Iterator[None]:
        """Point in-process Prefect helpers (suspend/resume, get_client) at this server."""
        with temporary_settings({PREFECT_API_URL: self.api_url}):
            yield

    # ------------------------------------------------------------------- server
    def _prefect(self, *args: str) -> list[str]:
        return [str(self.settings.python), "-m", "prefect", *args]

    @property
    def _sqlite_immediate(self) -> bool:
        return stack_settings.sqlite_immediate(self.settings)

    def _server_argv(self) -> list[str]:
        """``prefect server start`` on this port (through the SQLite launcher if embedded)."""
        return stack_settings.server_argv(self.settings, self.port)

    def _start_server_process(self) -> ManagedProcess:
        """``prefect server start`` on ``port``, its output in ``server.log``."""
        return ManagedProcess(
            "server",
            self._server_argv(),
            self.server_env(),
            self.data_dir,
            self.log_dir / "server.log",
        ).start()

    def start_server(self) -> None:
        """Start ``prefect server start`` and wait until ``/api/health`` answers."""
        if self.server is not None and self.server.running():
            return
        for d in (self.log_dir, self.prefect_home, self.sites_dir, self.results_dir):
            d.mkdir(parents=True, exist_ok=True)
        with _LIVE_LOCK:
            _LIVE.add(self)
        attempts = 1 if self.settings.port else 3
        for attempt in range(attempts):
            if attempt:
                self.port = free_port(self.settings.host)
            self.server = self._start_server_process()
            if self._wait_healthy(self.server, self.settings.start_timeout):
                return
            tail = self.server.log_tail()
            self.server.stop(timeout=5)
            if "address already in use" not in tail.lower():
                break
        raise StackError(f"Prefect server did not become healthy:\n{tail}")

    def restart_server(self) -> None:
        """Stop the server and start it again on the same port and database.

        Workers and flow runs keep running: they find the same API URL again (a server
        upgrade or crash-restart). The port just freed may linger for a moment: the start is
        retried on the same port until ``start_timeout``.
        """
        if self.server is not None:
            self.server.stop(timeout=15.0)
            self.server = None
        deadline = time.monotonic() + self.settings.start_timeout
        tail = ""
        while time.monotonic() < deadline:
            self.server = self._start_server_process()
            if self._wait_healthy(self.server, max(1.0, deadline - time.monotonic())):
                return
            tail = self.server.log_tail()
            self.server.stop(timeout=5)
            self.server = None
            if "address already in use" not in tail.lower():
                break
            time.sleep(0.5)
        raise StackError(f"Prefect server did not come back on port {self.port}:\n{tail}")

    def healthy(self, timeout: float = 2.0) -> bool:
        return http_ok(f"{self.api_url}/health", timeout)

    def _wait_healthy(self, proc: ManagedProcess, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.running():
                return False
            if self.healthy():
                return True
            time.sleep(0.25)
        return False

    # -------------------------------------------------- pool, limits, deployments
    def setup(self, rounds: Sequence[str] | None = None) -> SetupReport:
        """Work pool + per-round global concurrency limits (idempotent)."""
        return asyncio.run(
            setup_pool_and_limits(
                self.api_url,
                self.settings.pool,
                list(rounds) if rounds is not None else self.settings.rounds,
                self.settings.pool_limit,
                self.notification_settings(),
            )
        )

    def notification_settings(self) -> NotificationSettings:
        """The configured notifications, else the environment's (off for isolated stacks)."""
        if self.settings.notifications is not None:
            return self.settings.notifications
        if self.settings.isolate_topup_env:
            return NotificationSettings(webhook_url=None)
        return NotificationSettings()

    def prepare_store(self) -> None:
        """Create the outputs-store tables once, before flow runs share the database.

        Two flow-run processes starting together on a fresh SQLite file would otherwise race
        in ``create_all`` ("table ... already exists").
        """
        from store.db import get_engine

        get_engine(self.topup_database_url).dispose()

    def deploy(self) -> str:
        """``prefect --no-prompt deploy --all`` in the project dir; its output."""
        log = self.log_dir / "deploy.log"
        res = run_command(
            self._prefect("--no-prompt", "deploy", "--all"),
            self.settings.project_dir,
            self._base_env(),
            self.settings.deploy_timeout,
            "prefect deploy",
        )
        output = res.stdout + res.stderr
        with open(log, "a") as fh:
            fh.write(f"=== prefect deploy --all (exit {res.returncode})\n{output}\n")
        if res.returncode != 0:
            raise StackError(f"prefect deploy --all failed ({res.returncode}):\n{output[-4000:]}")
        return output

    # ------------------------------------------------------------------ workers
    def start_worker(
        self,
        name: str | None = None,
        wait: bool = True,
        wrap: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        """Start a process worker on the pool; with ``wait``, until the API knows it.

        ``wrap`` prefixes the command (e.g. ``ip netns exec <ns>``: a worker on another
        "host") and ``env`` overrides its environment; both are remembered under ``name``, so
        a restart of that worker starts it the same way.
        """
        self._worker_count += 1
        name = name or f"topup-worker-{self._worker_count}"
        if name in self.workers and self.workers[name].running():
            raise StackError(f"worker {name!r} is already running")
        if wrap is None and env is None and name in self.worker_specs:
            wrap, env = self.worker_specs[name]
        self.worker_specs[name] = (list(wrap or []), dict(env or {}))
        argv = [
            *(wrap or []),
            *self._prefect(
                "worker", "start", "--pool", self.settings.pool, "--type", "process", "--name", name
            ),
        ]
        if self.settings.worker_limit:
            argv += ["--limit", str(self.settings.worker_limit)]
        proc = ManagedProcess(
            name,
            argv,
            {**self.worker_env(), **(env or {})},
            self.settings.project_dir,
            self.log_dir / f"{name}.log",
        ).start()
        self.workers[name] = proc
        if wait:
            self._wait_worker_registered(proc, since=time.time())
        return proc

    def _wait_worker_registered(self, proc: ManagedProcess, since: float) -> None:
        """Poll the API until the worker has sent a heartbeat after ``since``."""
        deadline = time.monotonic() + self.settings.start_timeout
        with self.sync_client() as client:
            while time.monotonic() < deadline:
                if not proc.running():
                    raise StackError(f"worker {proc.name} exited:\n{proc.log_tail()}")
                workers = client.read_workers_for_work_pool(self.settings.pool)
                if any(
                    w.name == proc.name
                    and w.last_heartbeat_time is not None
                    and w.last_heartbeat_time.timestamp() >= since - 1
                    for w in workers
                ):
                    return
                time.sleep(0.25)
        raise StackError(f"worker {proc.name} did not register:\n{proc.log_tail()}")

    @property
    def worker(self) -> ManagedProcess | None:
        """The most recently started worker that still runs."""
        alive = [w for w in self.workers.values() if w.running()]
        return alive[-1] if alive else None

    def stop_worker(self, name: str, timeout: float = 15.0) -> bool:
        proc = self.workers.pop(name, None)
        return proc.stop(timeout) if proc else True

    def kill_worker(self, name: str | None = None) -> list[int]:
        """SIGKILL a worker and every process below it (its flow runs) — a machine crash.

        Returns the pids that were killed.
        """
        proc = self.workers[name] if name else self.worker
        if proc is None:
            raise StackError("no running worker to kill")
        pids = [pid for pid, _ in proc.tree()]
        proc.kill()
        return pids

    # ---------------------------------------------------------------- lifecycle
    def start(self, deploy: bool = True, worker: bool = True) -> PrefectStack:
        """Server, pool and limits, deployments, one worker; stops everything on failure."""
        try:
            self.start_server()
            self.setup()
            self.prepare_store()
            if deploy:
                self.deploy()
            if worker:
                self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def processes(self) -> list[int]:
        """Pids of every live process of the stack (server, workers and their children)."""
        procs = [*self.workers.values(), *([self.server] if self.server else [])]
        return [pid for p in procs for pid, _ in p.tree()]

    def stop(self) -> bool:
        """Stop the workers (their flow runs with them), then the server; True if clean."""
        clean = True
        for name in list(self.workers):
            clean = self.stop_worker(name) and clean
        if self.server is not None:
            clean = self.server.stop(timeout=15.0) and clean
            self.server = None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return clean

    def __enter__(self) -> PrefectStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stack in the foreground until Ctrl-C / SIGTERM."""
    parser = argparse.ArgumentParser(description="Prefect server + worker for Topup")
    parser.add_argument("--data-dir", type=Path, default=Path("var/stack"))
    parser.add_argument("--sites-dir", type=Path, default=None)
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--round", dest="rounds", action="append", default=None)
    parser.add_argument("--ui", action="store_true")
    args = parser.parse_args(argv)
    db_url = os.environ.get("TOPUP_PREFECT_DATABASE_URL")
    settings = StackSettings(
        data_dir=args.data_dir,
        sites_dir=args.sites_dir,
        port=args.port,
        ui=args.ui,
        rounds=args.rounds or ["round18"],
        server_database_url=SecretStr(db_url) if db_url else None,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with PrefectStack(settings) as stack:
        print(f"Prefect API {stack.api_url}; logs in {stack.log_dir}", flush=True)
        while not stop.wait(1.0):
            if stack.server is None or not stack.server.running():
                print("Prefect server exited", file=sys.stderr)
                break


if __name__ == "__main__":
    main()
