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
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import yaml
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import BaseModel, Field, SecretStr

from deployments.notifications import NotificationSettings
from deployments.setup import POOL_NAME, SetupReport
from deployments.setup import setup as setup_pool_and_limits
from topup_cli.processes import ManagedProcess

PROJECT_DIR = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A process of the stack did not start, or a set-up command failed."""


class StackSettings(BaseModel):
    """Where the stack keeps its state and how its processes are tuned."""

    data_dir: Path
    project_dir: Path = PROJECT_DIR
    host: str = HOST
    port: int = Field(0, ge=0, le=65535, description="0: a free port")
    # Prefect server database: SQLite under data_dir unless a PostgreSQL URL
    # (postgresql+asyncpg://...) is given. Secret: never logged.
    server_database_url: SecretStr | None = None
    ui: bool = False
    pool: str = POOL_NAME
    pool_limit: int | None = None
    rounds: list[str] = Field(default_factory=lambda: ["round18"])
    # A process worker asks for work every query_seconds (Prefect default 10 s): 0.25 s (one
    # light API read) makes a new run start within ~2 s. Prefetch lets it submit runs
    # scheduled just ahead.
    worker_query_seconds: float = Field(0.25, gt=0)
    worker_prefetch_seconds: float = Field(2.0, ge=0)
    worker_limit: int | None = Field(None, ge=1)
    # Flow-run processes send a heartbeat event this often (Prefect's minimum is 30 s): a run
    # that goes silent is set Crashed and rescheduled (deployments/recovery.py).
    heartbeat_seconds: int | None = Field(30, ge=30)
    # Let flow-run processes cache the project's bytecode (__pycache__, as any Python
    # install does) even if the caller set PYTHONDONTWRITEBYTECODE: it saves ~1 s per start.
    bytecode_cache: bool = True
    # Drop the caller's TOPUP_* variables (they override site files): tests want only what
    # they pass; an operator's `topup up` wants its shell's TOPUP_* to reach the flow runs.
    isolate_topup_env: bool = False
    sites_dir: Path | None = None  # TOPUP_SITES_DIR of flow runs (default data_dir/sites)
    topup_database_url: str | None = None  # outputs store (default SQLite in data_dir)
    results_dir: Path | None = None  # persisted task results (default data_dir/results)
    # Webhook notifications (deployments.notifications); None: TOPUP_NOTIFY_* from the
    # environment, unless isolate_topup_env (then off).
    notifications: NotificationSettings | None = None
    # Embedded SQLite server: every transaction begins IMMEDIATE (topup_cli.sqlite_server),
    # which removes the 503 "database is locked" answers under load (bench/sqlite_lock.py).
    sqlite_immediate: bool = True
    server_env: dict[str, str] = Field(default_factory=dict)
    worker_env: dict[str, str] = Field(default_factory=dict)
    python: Path = Path(sys.executable)
    start_timeout: float = 180.0
    deploy_timeout: float = 300.0

    def resolved(self) -> StackSettings:
        """Absolute paths, defaults under data_dir filled in."""
        data = self.data_dir.resolve()
        return self.model_copy(
            update={
                "data_dir": data,
                "project_dir": self.project_dir.resolve(),
                "sites_dir": (self.sites_dir or data / "sites").resolve(),
                "results_dir": (self.results_dir or data / "results").resolve(),
                "topup_database_url": self.topup_database_url or f"sqlite:///{data / 'topup.db'}",
            }
        )


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def deployment_names(project_dir: Path = PROJECT_DIR) -> list[str]:
    """``<flow name>/<deployment name>`` is not known without importing the flows, so this is
    just the deployment names ``prefect.yaml`` declares."""
    spec = yaml.safe_load((project_dir / "prefect.yaml").read_text())
    return [d["name"] for d in spec.get("deployments") or []]


def _inherited_env() -> dict[str, str]:
    """The caller's environment without any Prefect setting (the stack sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


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
        return self.data_dir / "prefect-home"

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
        env = _inherited_env()
        env.update(
            PREFECT_HOME=str(self.prefect_home),
            PREFECT_API_URL=self.api_url,
            # Prefect's telemetry off, server side and client side (topup_cli/__init__.py).
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_CLI_COLORS="false",
            PYTHONUNBUFFERED="1",
        )
        return env

    def server_env(self) -> dict[str, str]:
        s = self.settings
        env = self._base_env()
        db = (
            s.server_database_url.get_secret_value()
            if s.server_database_url
            else f"sqlite+aiosqlite:///{self.data_dir / 'prefect.db'}"
        )
        env.update(
            PREFECT_API_DATABASE_CONNECTION_URL=db,
            PREFECT_UI_ENABLED="true" if s.ui else "false",
            # No upgrade prompts or marketing banners in the operators' UI.
            PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
            # Expired leases (a run whose process died holding its round's slot) are
            # reclaimed within seconds of expiring instead of up to 15 s later.
            PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="2",
            # Concurrency leases (the round slots) on disk, not in the server's memory: a
            # restarted server otherwise forgets every lease while the limit still counts
            # the slot as taken, and no run of that round ever starts again (found by the
            # chaos suite, tests/chaos/test_faults.py). Files under PREFECT_HOME.
            PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=(
                "prefect.server.concurrency.lease_storage.filesystem"
            ),
        )
        if self._sqlite_immediate:
            # topup_cli.sqlite_server must import from the server's working dir (data_dir).
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(s.project_dir), os.environ.get("PYTHONPATH", "")) if p
            )
        env.update(s.server_env)
        return env

    def worker_env(self) -> dict[str, str]:
        """The worker's environment, which every flow run it starts inherits."""
        s = self.settings
        env = self._base_env()
        if s.isolate_topup_env:
            env = {k: v for k, v in env.items() if not k.startswith("TOPUP_")}
        if s.bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        storage = str(self.results_dir)
        env.update(
            PREFECT_WORKER_QUERY_SECONDS=str(s.worker_query_seconds),
            PREFECT_WORKER_PREFETCH_SECONDS=str(s.worker_prefetch_seconds),
            PREFECT_WORKER_ENABLE_CANCELLATION="true",
            # A burst of runs keeps a SQLite server busy (503, "database is locked") for
            # longer than the client's default 5 retries (~1 min of back-off): the worker then
            # gave up submitting a run and Prefect marked it Crashed (tests/chaos/test_load.py).
            # 7 retries back off for up to ~4 min; the server answers as soon as it can.
            PREFECT_CLIENT_MAX_RETRIES="7",
            # Both names of the same setting: results written by one flow-run process are
            # read back by the next (resume, retry) from this shared folder.
            PREFECT_LOCAL_STORAGE_PATH=storage,
            PREFECT_RESULTS_LOCAL_STORAGE_PATH=storage,
            TOPUP_SITES_DIR=str(self.sites_dir),
            TOPUP_DATABASE_URL=self.topup_database_url,
            PYTHONPATH=os.pathsep.join(
                p for p in (str(s.project_dir), os.environ.get("PYTHONPATH", "")) if p
            ),
            # The deployments' command is `python -m prefect.engine`: this interpreter.
            PATH=os.pathsep.join(
                p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p
            ),
        )
        if s.heartbeat_seconds:
            env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(s.heartbeat_seconds)
        env.update(s.worker_env)
        return env

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
        return self.settings.sqlite_immediate and self.settings.server_database_url is None

    def _server_argv(self) -> list[str]:
        """``prefect server start`` on this port (through the SQLite launcher if embedded)."""
        module = "topup_cli.sqlite_server" if self._sqlite_immediate else "prefect"
        return [
            str(self.settings.python), "-m", module,
            "server", "start",
            "--host", self.settings.host,
            "--port", str(self.port),
            "--ui" if self.settings.ui else "--no-ui",
        ]  # fmt: skip

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
            self.server = ManagedProcess(
                "server",
                self._server_argv(),
                self.server_env(),
                self.data_dir,
                self.log_dir / "server.log",
            ).start()
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
            self.server = ManagedProcess(
                "server",
                self._server_argv(),
                self.server_env(),
                self.data_dir,
                self.log_dir / "server.log",
            ).start()
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
        try:
            r = httpx.get(f"{self.api_url}/health", timeout=timeout)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

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
        try:
            res = subprocess.run(
                self._prefect("--no-prompt", "deploy", "--all"),
                cwd=self.settings.project_dir,
                env=self._base_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.settings.deploy_timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"prefect deploy timed out after {exc.timeout}s") from exc
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
