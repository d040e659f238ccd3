"""Fixtures of the end-to-end suite: everything real, once per database.

- ``database`` (module, parametrized ``sqlite`` / ``postgresql``): where the Prefect server and
  the outputs store + facade tables live. PostgreSQL gets a fresh database that is dropped
  afterwards (the ``postgres`` marker selects or deselects that half).
- ``e2e`` (module): on that database a ``PrefectStack`` with the UI (server, ``prefect deploy
  --all`` from prefect.yaml, process worker), the facade as its own process, and a simulated
  site reached over the real sshd pair.
- ``completed`` (module): one standard run created, started and followed to its end through the
  facade's HTTP API; every test of the module asserts something about that one run.

Module scope: a stack with a full run (steps 1.1 - 7) costs ~1.5 min, so each database gets one and pytest
runs all the tests of one database before it builds the other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from sim import users
from sim.site import SimSite, build_site
from sim.sshd import SshPair
from tests.conftest import SIM_USER, heal
from tests.e2e.facade_process import FacadeProcess, facade_env
from tests.facade.served import wait_settled
from tests.fixtures_stack import PREAPPROVED, TEST_WORKER_ENV
from tests.stack.helpers import SIM_FAST
from topup_cli.stack import PrefectStack, StackSettings, free_port

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BASE = "postgres@127.0.0.1:5432"
DATE = "250624"  # round18, 19 runs: the date of the specification's examples
ROUND = "round18"
WORKFLOW = "topup-standard"
VERSION = "1.2.0"
USER = "e2e-operator"
RUN_TIMEOUT = 480.0  # ~1.5 min on an idle 2-core machine


@dataclass(frozen=True)
class Database:
    """One database for everything: Prefect's tables, the outputs store, the facade's."""

    kind: str  # "sqlite" or "postgresql"
    name: str | None = None  # the PostgreSQL database

    @property
    def dsn(self) -> str:
        """libpq DSN (psycopg) of the PostgreSQL database."""
        return f"postgresql://{PG_BASE}/{self.name}"

    def prefect_url(self) -> str | None:
        """The Prefect server's URL (asyncpg); None: the stack's SQLite file."""
        return f"postgresql+asyncpg://{PG_BASE}/{self.name}" if self.kind == "postgresql" else None

    def topup_url(self, data_dir: Path) -> str:
        """SQLModel URL of the outputs store and the facade (psycopg 3 on PostgreSQL)."""
        if self.kind == "postgresql":
            return f"postgresql+psycopg://{PG_BASE}/{self.name}"
        return f"sqlite:///{data_dir / 'topup.db'}"


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite")
        return
    name = f"topup_e2e_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield Database("postgresql", name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def e2e_site(sim_ssh: SshPair) -> Iterator[tuple[SimSite, dict[str, Any]]]:
    """A simulated site for the module (the per-test ``sim`` fixture is function-scoped) and
    its settings over the sshd pair with the client key, as the JSON of a site file."""
    root = Path(tempfile.mkdtemp(prefix="topup-e2e-site-", dir="/tmp"))
    os.chmod(root, 0o755)
    site = build_site(root)
    users.chown_tree(root, SIM_USER)
    site.set_faults(**SIM_FAST)
    heal(sim_ssh)
    sim_ssh.follow_faults(site.state_dir / "faults.json")
    try:
        settings = site.settings(**sim_ssh.client_overrides(auth="key"))  # type: ignore[arg-type]
        data = settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
        yield site, data
    finally:
        sim_ssh.follow_faults(None)
        site.stop_jobs()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class E2E:
    """The running system of one database."""

    database: Database
    stack: PrefectStack
    facade: FacadeProcess
    sim: SimSite
    site: str  # site name (TOPUP_SITES_DIR/<site>.json)
    downloads: Path  # where flow runs download and the facade serves from
    token: str

    def client(self) -> httpx.Client:
        return self.facade.client(self.token)


@pytest.fixture(scope="module")
def e2e(database: Database, e2e_site: tuple[SimSite, dict[str, Any]]) -> Iterator[E2E]:
    sim, site_data = e2e_site
    data_dir = Path(tempfile.mkdtemp(prefix=f"topup-e2e-{database.kind}-", dir="/tmp"))
    downloads = data_dir / "downloads"
    downloads.mkdir()
    facade_port = free_port()
    prefect_url = database.prefect_url()
    stack = PrefectStack(
        StackSettings(
            data_dir=data_dir,
            ui=True,
            rounds=[ROUND],
            server_database_url=SecretStr(prefect_url) if prefect_url else None,
            topup_database_url=database.topup_url(data_dir),
            isolate_topup_env=True,
            # A first start (migrations, the UI's static files copied) took over the default
            # 180 s on a 2-core machine shared with other test runs (load average ~25).
            start_timeout=360.0,
            worker_env={
                **TEST_WORKER_ENV,
                # The PDF link artifacts point at the facade's download route.
                "TOPUP_DOWNLOADS_BASE_URL": f"http://127.0.0.1:{facade_port}/api/downloads",
            },
        )
    )
    facade: FacadeProcess | None = None
    clean = False
    try:
        stack.start()
        site = f"e2e-{database.kind}"
        path = stack.sites_dir / f"{site}.json"
        path.write_text(json.dumps({**site_data, "downloads_dir": str(downloads)}, indent=1))
        path.chmod(0o600)
        facade = FacadeProcess(
            port=facade_port,
            env=facade_env(
                port=facade_port,
                prefect_api_url=stack.api_url,
                database_url=stack.topup_database_url,
                downloads_dir=downloads,
                prefect_home=stack.prefect_home,
                project_dir=stack.settings.project_dir,
            ),
            workdir=data_dir / "facade",
            log_path=stack.log_dir / "facade.log",
        ).start()
        token = facade.issue_token(USER)
        yield E2E(database, stack, facade, sim, site, downloads, token)
        clean = True
    finally:
        facade_clean = facade.stop() if facade is not None else True
        stack_clean = stack.stop()
        if not os.environ.get("TOPUP_KEEP_STACK"):
            shutil.rmtree(data_dir, ignore_errors=True)
    if clean:
        assert facade_clean and stack_clean, "a process of the end-to-end system survived"


@dataclass(frozen=True)
class Completed:
    """The run the module checks: the facade's task and the Prefect flow run behind it."""

    task_id: int
    flow_run_id: str
    seconds: float  # from /start to the facade reporting success


def _wait_success(c: httpx.Client, task_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    progress: dict[str, Any] = {}
    while time.monotonic() < deadline:
        progress = c.get(f"/api/tasks/{task_id}/progress").json()
        if progress.get("status") == "success":
            wait_settled(c, task_id)  # the last step's record may lag the run's end
            return c.get(f"/api/tasks/{task_id}/progress").json()
        if progress.get("status") in ("failed", "cancelled"):
            break
        time.sleep(0.5)
    detail = c.get(f"/api/tasks/{task_id}").json().get("task", {})
    pytest.fail(
        f"task {task_id} did not succeed within {timeout}s: {progress}; "
        f"state {detail.get('state_name')}: {detail.get('error_message') or detail.get('message')}"
    )


@pytest.fixture(scope="module")
def completed(e2e: E2E) -> Completed:
    """Create, start and follow one standard run through the facade (the legacy client's way)."""
    with e2e.client() as c:
        created = c.post(
            "/api/tasks",
            json={
                "user_id": USER,
                "workflow_name": WORKFLOW,
                "workflow_version": VERSION,
                "task_name": f"e2e on {e2e.database.kind}",
                "parameters": {
                    "user_id": USER,
                    "date": DATE,
                    "round": ROUND,
                    "site": e2e.site,
                    "max_wait_minutes": 2,
                    **PREAPPROVED,
                },
            },
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        t0 = time.monotonic()
        started = c.post(f"/api/tasks/{task_id}/start")
        assert started.status_code == 200, started.text
        _wait_success(c, task_id, RUN_TIMEOUT)
        seconds = time.monotonic() - t0
        flow_run_id = c.get(f"/api/tasks/{task_id}").json()["task"]["flow_run_id"]
    print(f"\n[{e2e.database.kind}] start -> success through the facade: {seconds:.1f}s")
    return Completed(task_id, str(flow_run_id), seconds)
