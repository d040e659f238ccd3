"""The Prefect runtime in high availability: API servers, background services, HAProxy.

Why: one Prefect server is a single point of failure. Prefect's scaled self-hosted set-up
(docs: "How to scale self-hosted Prefect") is several ``prefect server start --no-services``
API processes and one ``prefect server services start`` process, all on PostgreSQL, with Redis
(``prefect-redis``) as the events broker and cache, the causal-ordering store, the concurrency
lease storage and the background services' task queue (Docket), behind a load balancer.
``HaPrefectStack`` is ``PrefectStack`` with that server side; clients (workers, deployments,
the facade) only ever see the load balancer's URL.

    TOPUP_HA_PREFECT_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/topup_prefect
    TOPUP_HA_REDIS_DB=1 topup up --ha
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from topup_cli.haproxy import Backend, Bind, HaproxyConfig, HttpService, start_haproxy
from topup_cli.processes import ManagedProcess
from topup_cli.stack import PrefectStack, StackError, StackSettings, free_port, run_command

DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class HaSettings(BaseSettings):
    """Where the HA stack keeps its state (environment prefix ``TOPUP_HA_``)."""

    model_config = SettingsConfigDict(env_prefix="TOPUP_HA_", extra="ignore")

    # Prefect's own database: a PostgreSQL database of its own, created if missing.
    prefect_database_url: SecretStr = SecretStr(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/topup_prefect"
    )
    # The outputs store and facade database when TOPUP_DATABASE_URL is not set: flow runs on
    # several hosts and two facade processes share it.
    outputs_database_url: SecretStr = SecretStr(
        "postgresql+psycopg://postgres@127.0.0.1:5432/topup_outputs"
    )
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    # The Redis database index of the messaging broker, cache, ordering and leases; the
    # background services' queue (Docket) uses the next one. Keep other users off both.
    redis_db: int = Field(1, ge=0, le=14)
    api_servers: int = Field(2, ge=1, le=8)
    facades: int = Field(2, ge=1, le=8)

    @field_validator("prefect_database_url", "outputs_database_url")
    @classmethod
    def _postgres(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if not parts.scheme.startswith("postgresql"):
            raise ValueError("the HA stack needs PostgreSQL (postgresql+<driver>://...)")
        if not DB_NAME.match(parts.path.lstrip("/")):
            raise ValueError("the database name must be a plain lower-case identifier")
        return value

    @property
    def docket_db(self) -> int:
        return self.redis_db + 1

    def redis_env(self) -> dict[str, str]:
        """Prefect's Redis settings, as its scaling guide names them (checked against 3.9.1:
        ``server.events.messaging_broker``/``messaging_cache`` take the ``PREFECT_MESSAGING_*``
        aliases, ``server.events.causal_ordering``, ``server.concurrency.lease_storage``,
        ``server.docket.url``; ``prefect_redis.client.RedisMessagingSettings``)."""
        return {
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_HOST": self.redis_host,
            "PREFECT_REDIS_MESSAGING_PORT": str(self.redis_port),
            "PREFECT_REDIS_MESSAGING_DB": str(self.redis_db),
            "PREFECT_SERVER_DOCKET_URL": (
                f"redis://{self.redis_host}:{self.redis_port}/{self.docket_db}"
            ),
        }


def _name_and_admin(url: str) -> tuple[str, str]:
    """The database name of ``url`` (checked again: a plain identifier) and the URL of the
    server's ``postgres`` database with the same user, without the driver part."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name, urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in ``url`` if it does not exist; True if made.

    Connects to the server's ``postgres`` database with the same user (the driver part of
    the URL, ``+asyncpg`` / ``+psycopg``, is dropped). The name was validated by
    ``HaSettings``; it is quoted as an identifier all the same.
    """
    name, admin = _name_and_admin(url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (tests' throw-away databases), ending its sessions."""
    name, admin = _name_and_admin(url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class HaPrefectStack(PrefectStack):
    """``PrefectStack`` whose server is N API processes + 1 services process behind HAProxy.

    ``port`` / ``api_url`` are the load balancer's; ``api_servers`` and ``services`` are the
    processes behind it. ``server`` stays None: nothing depends on one server process.
    """

    def __init__(self, settings: StackSettings, ha: HaSettings) -> None:
        super().__init__(settings)
        self.ha = ha
        self.api_ports: list[int] = []
        self.api_servers: dict[str, ManagedProcess] = {}
        self.services: ManagedProcess | None = None
        self.balancer: ManagedProcess | None = None
        # Extra HTTP frontends on the same HAProxy (the facade's, added by the supervisor).
        self.extra_http: list[HttpService] = []

    # ------------------------------------------------------------------ env
    def server_env(self) -> dict[str, str]:
        env = super().server_env()
        env.update(self.ha.redis_env())
        env.update(
            PREFECT_API_DATABASE_CONNECTION_URL=self.ha.prefect_database_url.get_secret_value(),
            # Migrations run once, before any server starts (Prefect's advice for several
            # servers on one database).
            PREFECT_API_DATABASE_MIGRATE_ON_START="false",
        )
        env.update(self.settings.server_env)
        return env

    # ----------------------------------------------------------- processes
    def api_name(self, i: int) -> str:
        return f"prefect-api-{i + 1}"

    def _api_argv(self, port: int) -> list[str]:
        return self._prefect(
            "server",
            "start",
            "--host",
            self.settings.host,
            "--port",
            str(port),
            "--no-services",
            "--ui" if self.settings.ui else "--no-ui",
        )

    def start_api_server(self, i: int) -> ManagedProcess:
        """Start API server ``i`` on its port (kept across restarts); wait until healthy."""
        name = self.api_name(i)
        port = self.api_ports[i]
        deadline = time.monotonic() + self.settings.start_timeout
        tail = ""
        while time.monotonic() < deadline:
            proc = ManagedProcess(
                name,
                self._api_argv(port),
                self.server_env(),
                self.data_dir,
                self.log_dir / f"{name}.log",
            ).start()
            self.api_servers[name] = proc
            if self._wait_url(proc, f"http://{self.settings.host}:{port}/api/health", deadline):
                return proc
            tail = proc.log_tail()
            proc.stop(timeout=5)
            if "address already in use" not in tail.lower():
                break
            time.sleep(0.5)
        raise StackError(f"{name} did not become healthy:\n{tail}")

    def start_services(self) -> ManagedProcess:
        """``prefect server services start``: scheduler, triggers, repossessor, ..."""
        self.services = ManagedProcess(
            "prefect-services",
            self._prefect("server", "services", "start"),
            self.server_env(),
            self.data_dir,
            self.log_dir / "prefect-services.log",
        ).start()
        return self.services

    def balancer_config(self) -> HaproxyConfig:
        api = HttpService(
            name="prefect_api",
            binds=[Bind(host=self.settings.host, port=self.port)],
            backends=[
                Backend(name=self.api_name(i), host=self.settings.host, port=p)
                for i, p in enumerate(self.api_ports)
            ],
        )
        return HaproxyConfig(http=[api, *self.extra_http])

    def start_balancer(self) -> ManagedProcess:
        self.balancer = start_haproxy(
            "haproxy",
            self.balancer_config(),
            self.data_dir / "haproxy.cfg",
            self.log_dir / "haproxy.log",
            self._base_env(),
        )
        return self.balancer

    def _wait_url(self, proc: ManagedProcess, url: str, deadline: float) -> bool:
        import httpx

        while time.monotonic() < deadline:
            if not proc.running():
                return False
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        return False

    def start_server(self) -> None:
        """Databases, migrations, API servers, services, then the load balancer."""
        for d in (self.log_dir, self.prefect_home, self.sites_dir, self.results_dir):
            d.mkdir(parents=True, exist_ok=True)
        from topup_cli.stack import _LIVE, _LIVE_LOCK

        with _LIVE_LOCK:
            _LIVE.add(self)
        ensure_database(self.ha.prefect_database_url.get_secret_value())
        if self.topup_database_url.startswith("postgresql"):
            ensure_database(self.topup_database_url)
        self.migrate()
        if not self.api_ports:
            self.api_ports = [free_port(self.settings.host) for _ in range(self.ha.api_servers)]
        for i in range(self.ha.api_servers):
            self.start_api_server(i)
        self.start_services()
        self.start_balancer()
        deadline = time.monotonic() + self.settings.start_timeout
        assert self.balancer is not None
        if not self._wait_url(self.balancer, f"{self.api_url}/health", deadline):
            raise StackError(f"the load balancer did not answer:\n{self.balancer.log_tail()}")

    def migrate(self) -> None:
        """``prefect server database upgrade -y`` once, before the servers start."""
        log = self.log_dir / "migrate.log"
        res = run_command(
            self._prefect("server", "database", "upgrade", "-y"),
            self.data_dir,
            self.server_env(),
            self.settings.start_timeout,
            "database migration",
        )
        log.write_text(res.stdout + res.stderr)
        if res.returncode != 0:
            raise StackError(f"database migration failed:\n{(res.stdout + res.stderr)[-3000:]}")

    def restart_server(self) -> None:
        """Restart every API server, one at a time (a rolling restart: the API stays up)."""
        for i in range(len(self.api_ports)):
            self.restart_api_server(i)

    def restart_api_server(self, i: int) -> None:
        proc = self.api_servers.pop(self.api_name(i), None)
        if proc is not None:
            proc.stop(timeout=15.0)
        self.start_api_server(i)

    def restart_services(self) -> None:
        if self.services is not None:
            self.services.stop(timeout=15.0)
        self.start_services()

    def server_processes(self) -> list[ManagedProcess]:
        """Every server-side process: API servers, services, load balancer."""
        procs = list(self.api_servers.values())
        procs += [p for p in (self.services, self.balancer) if p is not None]
        return procs

    def processes(self) -> list[int]:
        procs = [*self.workers.values(), *self.server_processes()]
        return [pid for p in procs for pid, _ in p.tree()]

    def stop(self) -> bool:
        """Workers, then the load balancer, services and API servers; True if clean."""
        from topup_cli.stack import _LIVE, _LIVE_LOCK

        clean = True
        for name in list(self.workers):
            clean = self.stop_worker(name) and clean
        for proc in [p for p in (self.balancer, self.services) if p is not None]:
            clean = proc.stop(timeout=15.0) and clean
        self.balancer = self.services = None
        for name in list(self.api_servers):
            clean = self.api_servers.pop(name).stop(timeout=15.0) and clean
        with _LIVE_LOCK:
            _LIVE.discard(self)
        return clean
