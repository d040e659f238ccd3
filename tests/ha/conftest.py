"""The HA stack of the ``ha`` suites, shared by a whole test module.

``ha_env`` (module): ``topup up --ha --no-ui`` in a process of its own (as an operator starts
it, ``TOPUP_STACK_WORKERS=0``: no worker on the server machine), on a PostgreSQL 15 cluster and
a ``redis-server`` of its own (``OwnPostgres``, ``OwnRedis``: restarting them, as two fault
scenarios do, leaves the machine's shared servers alone); two process workers, each in its own
network namespace (hosts a and b, tests/ha/netns.py), reaching the API through a gateway relay
to the load balancer, the site through the jump host and the outputs store in PostgreSQL, with
the shared result storage (the stack's results dir). A simulated site of its own. At the end
``topup down`` must leave no process behind; namespaces, the PostgreSQL cluster and Redis are
removed even when a test failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from sim import users
from sim.site import build_site, remove_site
from sim.sshd import SshPair
from tests.chaos.faults_helpers import SIM_CHAOS
from tests.cli.helpers import cli_env, processes_using, wait_for
from tests.conftest import SIM_USER, heal
from tests.fixtures_stack import TEST_WORKER_ENV, StackRuns
from tests.ha.netns import Host, gateway_config, make_hosts, remove_stale
from topup_cli.control import stack_status
from topup_cli.haproxy import start_haproxy
from topup_cli.main import app
from topup_cli.processes import ManagedProcess, descendants, signal_tree
from topup_cli.stack import PrefectStack, StackSettings, free_port
from topup_cli.state import Component, StackState, read_state

SITE = "ha-sim"
# Detection of a dead flow-run process (missing heartbeats; 30 s apart) and the recovery
# loop's pace, for the tests: fast, yet far from a false alarm.
RECOVERY_ENV = {
    "TOPUP_RECOVERY_ZOMBIE_SECONDS": "60",
    "TOPUP_RECOVERY_POLL_SECONDS": "1",
    "TOPUP_RECOVERY_MAX_ATTEMPTS": "3",
}
runner = CliRunner()


class OwnRedis:
    """The HA stack's Redis, a ``redis-server`` of this test on a free loopback port with its
    own directory: restarting it (a fault scenario) cannot touch the machine's Redis."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: ManagedProcess | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> OwnRedis:
        argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]  # fmt: skip
        self.proc = ManagedProcess(
            "redis", argv, {"PATH": os.environ.get("PATH", "")}, self.workdir,
            self.workdir / "redis.log",
        ).start()  # fmt: skip
        wait_for(self.up, 30, "redis-server answering", interval=0.1)
        return self

    def restart(self) -> float:
        """SHUTDOWN SAVE (its data is written to its dump file, as a Redis with persistence
        keeps it), then the same server again, which loads it; seconds it was away."""
        proc = self.proc
        assert proc is not None
        began = time.monotonic()
        try:
            self.client().shutdown(save=True)
        except redis.ConnectionError:
            pass  # the connection closes as the server exits
        wait_for(lambda: not proc.running(), 30, "redis-server exited", interval=0.05)
        proc.stop(timeout=1)
        self.start()
        return time.monotonic() - began

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class OwnPostgres:
    """The HA stack's PostgreSQL 15, a cluster of this test (initdb in its own directory, a
    free loopback port, trust auth for ``postgres``): restarting it cannot disturb the
    machine's cluster, which other tests use at the same time. Runs as the ``postgres``
    system user, as PostgreSQL requires."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()

    def _pg(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def up(self) -> bool:
        res = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            timeout=30,
        )
        return res.returncode == 0

    def start(self) -> OwnPostgres:
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.workdir, "postgres", "postgres")
        res = self._pg(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync",
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed: {res.stdout}{res.stderr}")
        self._ctl("start")
        return self

    def _ctl(self, action: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} "
            "-c max_connections=200 -c fsync=off"
        )
        res = self._pg(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.workdir / "pg.log"),
            "-o", options, "-w", "-m", "fast", action,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed: {res.stdout}{res.stderr}")
        if action != "stop":
            wait_for(self.up, 60, "PostgreSQL answering", interval=0.1)

    def restart(self) -> float:
        """``pg_ctl restart -m fast``: every connection is cut; seconds until it answers."""
        began = time.monotonic()
        self._ctl("restart")
        return time.monotonic() - began

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop")


@dataclass
class HaEnv:
    data: Path
    up: subprocess.Popen[bytes]
    clients: PrefectStack  # never started: the API URL, clients, and the workers it starts
    hosts: list[Host]
    sim: Any
    redis: OwnRedis
    postgres: OwnPostgres
    prefect_url: str
    gateway: ManagedProcess
    relays: dict[str, tuple[int, int]]
    sim_ssh: SshPair
    downloads: Path
    since: float = 0.0  # when the current scenario's run was started (time.time())

    @property
    def state_file(self) -> Path:
        return self.data / "stack.json"

    def state(self) -> StackState:
        state = read_state(self.state_file)
        assert state is not None, f"no state file: is `topup up --ha` running?\n{self.up_log()}"
        return state

    def up_log(self, chars: int = 4000) -> str:
        """The end of what `topup up --ha` said (its restarts, and why it gave up)."""
        try:
            return (self.data.parent / "up.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def component(self, name: str) -> Component:
        comp = self.state().component(name)
        assert comp is not None and comp.alive(), f"{name} is not running"
        return comp

    def kill(self, name: str) -> None:
        """SIGKILL a component and everything below it (a crashed process, not a stop)."""
        comp = self.component(name)
        assert comp.pid is not None
        signal_tree([comp.key, *descendants(comp.pid)], signal.SIGKILL)

    def healthy(self) -> bool:
        assert self.up.poll() is None, f"the supervisor exited:\n{self.up_log()}"
        return stack_status(self.state_file).all_healthy

    def wait_healthy(self, timeout: float, what: str) -> None:
        """Until every part is alive and answers; on time-out, which did not, and what the
        supervisor said."""
        try:
            wait_for(self.healthy, timeout, what, interval=0.25)
        except AssertionError as exc:
            status = stack_status(self.state_file)
            down = [c for c in status.components if not (c.alive and c.healthy)]
            raise AssertionError(f"{exc}; not healthy: {down}\n{self.up_log()}") from None

    def runs(self) -> StackRuns:
        return StackRuns(self.clients)

    @property
    def workers(self) -> dict[str, ManagedProcess]:
        return self.clients.workers

    def worker_name(self, host: Host) -> str:
        return f"worker-{host.name}"

    def start_host_worker(self, host: Host) -> ManagedProcess:
        """The worker of ``host``: in its namespace, everything through its gateway."""
        gw = host.gateway
        data = self.data / "hosts" / host.name
        outputs = self.state().topup_database_url.replace(
            f"127.0.0.1:{self.postgres.port}", f"{gw}:{self.relays['pg'][0]}"
        )
        env = {
            **TEST_WORKER_ENV,
            "PREFECT_API_URL": f"http://{gw}:{self.relays['api'][0]}/api",
            "PREFECT_HOME": str(data / "prefect-home"),
            "TOPUP_SITES_DIR": str(data / "sites"),
            "TOPUP_DATABASE_URL": outputs,
        }
        return self.clients.start_worker(self.worker_name(host), wrap=host.wrap(), env=env)

    def write_host_site(self, host: Host) -> None:
        """The host's own view of the site: the jump host at its gateway's relay port."""
        data = self.data / "hosts" / host.name
        (data / "sites").mkdir(parents=True, exist_ok=True)
        jump_port = self.relays["jump"][0]
        known = data / "known_hosts"
        known.write_text(
            f"[{host.gateway}]:{jump_port} {self.sim_ssh.host_public_key('jump')}\n"
            + self.sim_ssh.known_hosts.read_text()
        )
        overrides = self.sim_ssh.client_overrides(auth="key")
        overrides["jump"] = {**overrides["jump"], "host": host.gateway, "port": jump_port}
        overrides["known_hosts_file"] = known
        settings = self.sim.settings(**overrides).model_copy(
            update={"downloads_dir": self.downloads}
        )
        path = data / "sites" / f"{SITE}.json"
        data_json = settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
        path.write_text(json.dumps(data_json, indent=1))
        path.chmod(0o600)


def _stop_up(up: subprocess.Popen[bytes], data: Path) -> None:
    """A supervisor still running after a failure: SIGTERM (its orderly stop), then `down`."""
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=120)
        except subprocess.TimeoutExpired:
            up.kill()
    if processes_using(data):
        runner.invoke(app, ["down", "--data-dir", str(data)])


def _remove_tree(base: Path) -> None:
    if not os.environ.get("TOPUP_KEEP_STACK"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ha_env(sim_ssh: SshPair) -> Iterator[HaEnv]:
    remove_stale()
    base = Path(tempfile.mkdtemp(prefix="topup-ha-", dir="/tmp"))
    base.chmod(0o755)
    data = base / "var"
    site_root = base / "site"
    site_root.mkdir()
    site_root.chmod(0o755)
    users.chown_tree(site_root, SIM_USER)
    # Every clean-up is registered as soon as its resource exists and runs in reverse order,
    # each one even when an earlier one failed (ExitStack), also when the test failed.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_remove_tree, base)
        postgres = OwnPostgres(base / "postgres")
        cleanup.callback(postgres.stop)
        postgres.start()
        pg = f"postgres@127.0.0.1:{postgres.port}"
        prefect_url = f"postgresql+asyncpg://{pg}/topup_prefect"
        outputs_url = f"postgresql+psycopg://{pg}/topup_outputs"
        own_redis = OwnRedis(base / "redis")
        cleanup.callback(own_redis.stop)
        own_redis.start()
        hosts = make_hosts(2)
        for host in hosts:
            cleanup.callback(host.remove)
        sim = build_site(site_root)
        cleanup.callback(remove_site, sim)
        cleanup.callback(sim.stop_jobs)
        users.chown_tree(site_root, SIM_USER)
        sim.set_faults(**SIM_CHAOS)
        heal(sim_ssh)
        env = cli_env(data)
        env.update(
            RECOVERY_ENV,
            TOPUP_STACK_WORKERS="0",
            TOPUP_STACK_ROUNDS='["round18"]',
            TOPUP_HA_PREFECT_DATABASE_URL=prefect_url,
            TOPUP_HA_OUTPUTS_DATABASE_URL=outputs_url,
            TOPUP_HA_REDIS_PORT=str(own_redis.port),
            TOPUP_HA_REDIS_DB="0",
        )
        with open(base / "up.log", "wb") as out:
            up = subprocess.Popen(
                [sys.executable, "-m", "topup_cli.main", "up", "--ha", "--no-ui"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        cleanup.callback(_stop_up, up, data)

        def is_up() -> bool:
            assert up.poll() is None, (base / "up.log").read_text()
            return stack_status(data / "stack.json").all_healthy

        wait_for(is_up, 600, "`topup up --ha` healthy")
        state = read_state(data / "stack.json")
        assert state is not None
        lb_port = int(state.api_url.rsplit(":", 1)[1].split("/")[0])
        clients = PrefectStack(
            StackSettings(
                data_dir=data,
                port=lb_port,
                isolate_topup_env=True,
                results_dir=data / "results",
                sites_dir=data / "sites",
                topup_database_url=state.topup_database_url,
            )
        )
        relays = {
            "api": (free_port(), lb_port),
            "jump": (free_port(), sim_ssh.port("jump")),
            "pg": (free_port(), postgres.port),
        }
        gateway = start_haproxy(
            "gateway",
            gateway_config(hosts, relays),
            base / "gateway" / "haproxy.cfg",
            base / "gateway" / "haproxy.log",
            {"PATH": os.environ.get("PATH", "")},
        )
        cleanup.callback(gateway.stop, 5)
        ha = HaEnv(
            data=data,
            up=up,
            clients=clients,
            hosts=hosts,
            sim=sim,
            redis=own_redis,
            postgres=postgres,
            prefect_url=prefect_url,
            gateway=gateway,
            relays=relays,
            sim_ssh=sim_ssh,
            downloads=base / "downloads",
        )
        cleanup.callback(clients.stop)  # the namespaced workers
        for host in hosts:
            ha.write_host_site(host)
            ha.start_host_worker(host)
        yield ha
        # `topup down` stops every process `topup up --ha` started.
        state = ha.state()
        listed = [c.pid for c in state.components if c.pid is not None]
        pids = set(listed) | {pid for p in listed for pid, _ in descendants(p)}
        clients.stop()
        res = runner.invoke(app, ["down", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        assert up.wait(timeout=120) == 0, (base / "up.log").read_text()
        still = [p for p in pids if Path(f"/proc/{p}").exists()]
        left = processes_using(data)
        assert not still and not left, f"left running after topup down: {still} {left}"
