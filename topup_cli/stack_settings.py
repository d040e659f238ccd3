"""What the stack's processes are given: the stack settings, and from them each process's
environment and the Prefect server's command line.

Why apart from ``topup_cli/stack.py``: these are pure derivations of ``StackSettings`` (no
process is started), the place to read what a server, worker or flow run sees; ``PrefectStack``
(and the HA stack) start and stop the processes.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, SecretStr

from deployments.notifications import NotificationSettings
from deployments.setup import POOL_NAME

PROJECT_DIR = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


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


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` if it can be bound now, else (or for 0) a free port."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
    return free_port(host)


def deployment_names(project_dir: Path = PROJECT_DIR) -> list[str]:
    """``<flow name>/<deployment name>`` is not known without importing the flows, so this is
    just the deployment names ``prefect.yaml`` declares."""
    spec = yaml.safe_load((project_dir / "prefect.yaml").read_text())
    return [d["name"] for d in spec.get("deployments") or []]


def inherited_env() -> dict[str, str]:
    """The caller's environment without any Prefect setting (the stack sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def prefect_home(settings: StackSettings) -> Path:
    """PREFECT_HOME of every process of the stack (resolved settings)."""
    return settings.data_dir / "prefect-home"


def sqlite_immediate(settings: StackSettings) -> bool:
    """The embedded SQLite server runs through topup_cli.sqlite_server (IMMEDIATE)."""
    return settings.sqlite_immediate and settings.server_database_url is None


def base_env(settings: StackSettings, api_url: str) -> dict[str, str]:
    """The caller's environment without its Prefect settings, pointed at this server."""
    env = inherited_env()
    env.update(
        PREFECT_HOME=str(prefect_home(settings)),
        PREFECT_API_URL=api_url,
        # Prefect's telemetry off, server side and client side (topup_cli/__init__.py).
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_CLI_COLORS="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def server_env(settings: StackSettings, api_url: str) -> dict[str, str]:
    """The Prefect server's environment: its database, UI, services and SQLite launcher."""
    s = settings
    env = base_env(settings, api_url)
    db = (
        s.server_database_url.get_secret_value()
        if s.server_database_url
        else f"sqlite+aiosqlite:///{s.data_dir / 'prefect.db'}"
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
    if sqlite_immediate(s):
        # topup_cli.sqlite_server must import from the server's working dir (data_dir).
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(s.project_dir), os.environ.get("PYTHONPATH", "")) if p
        )
    env.update(s.server_env)
    return env


def worker_env(settings: StackSettings, api_url: str) -> dict[str, str]:
    """The worker's environment, which every flow run it starts inherits."""
    s = settings
    env = base_env(settings, api_url)
    if s.isolate_topup_env:
        env = {k: v for k, v in env.items() if not k.startswith("TOPUP_")}
    if s.bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    storage = str(s.results_dir)
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
        TOPUP_SITES_DIR=str(s.sites_dir),
        TOPUP_DATABASE_URL=str(s.topup_database_url),
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


def server_argv(settings: StackSettings, port: int) -> list[str]:
    """``prefect server start`` on this port (through the SQLite launcher if embedded)."""
    module = "topup_cli.sqlite_server" if sqlite_immediate(settings) else "prefect"
    return [
        str(settings.python), "-m", module,
        "server", "start",
        "--host", settings.host,
        "--port", str(port),
        "--ui" if settings.ui else "--no-ui",
    ]  # fmt: skip
