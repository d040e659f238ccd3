"""``topup up``: start the whole stack, keep it running, and take it down cleanly.

Order: the simulated site first (its site file must exist before any flow run reads it),
then the Prefect stack (server with UI, pool and limits, ``prefect deploy --all``, worker),
then the facade (uvicorn in its own process). The state file is written once everything
answers; ``topup down`` signals the supervisor, which stops the parts in reverse order. A
worker or facade that dies is restarted (a few times); a dead Prefect server ends the
stack, since nothing works without it.

With ``ha`` (``topup up --ha``) the Prefect side is ``topup_cli.ha.HaPrefectStack`` (API
servers + services process on PostgreSQL and Redis, behind HAProxy) and the facade runs as
several processes behind the same HAProxy; any of those processes that dies is restarted
while the others keep serving.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from deployments.notifications import NotificationSettings
from sim.sshd import held_by
from topup_cli.ha import HaPrefectStack, HaSettings
from topup_cli.haproxy import Backend, Bind, HttpService
from topup_cli.health import Probe, http_health, ssh_handshake
from topup_cli.processes import ManagedProcess, alive, descendants, signal_tree, wait_gone
from topup_cli.settings import CliSettings
from topup_cli.simsite import SimStack, sshd_dir, stop_leftovers
from topup_cli.stack import PROJECT_DIR, PrefectStack, StackError, StackSettings
from topup_cli.state import Component, StackState, pid_key, read_state, write_state

MAX_RESTARTS = 5
# Parts whose health route asks the Prefect server: not restarted for the server's silence.
NEEDS_SERVER = frozenset({"facade"})


class Shutdown(BaseException):
    """Raised by the signal handler while the stack is starting: abort the start-up."""


def pick_port(host: str, preferred: int) -> int:
    """``preferred`` if it can be bound now, else (or for 0) a free port."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class AlreadyRunning(RuntimeError):
    """Another ``topup up`` owns this data dir."""


class Supervisor:
    """The processes of one stack, their state file, and their orderly shutdown."""

    def __init__(
        self,
        settings: CliSettings,
        sim: bool = False,
        fresh_sim: bool = False,
        say: Callable[[str], None] = print,
        ha: HaSettings | None = None,
    ) -> None:
        self.settings = settings
        self.ha = ha
        self.data_dir = settings.data_dir.resolve()
        self.sim_enabled = sim
        self.fresh_sim = fresh_sim
        self.say = say
        self.state_path = self.data_dir / "stack.json"
        self.stack: PrefectStack | None = None
        self.sim: SimStack | None = None
        self.facade: ManagedProcess | None = None
        self.facade_port = 0
        self.recovery: ManagedProcess | None = None
        # HA: facade processes by name, each on its own port behind the load balancer.
        self.facades: dict[str, ManagedProcess] = {}
        self.facade_ports: dict[str, int] = {}
        self.restarts: dict[str, int] = {}
        # Notifications: the configured webhook, or with --sim (and none configured) the
        # stack's own receiver writing them to notifications_log.
        self.notify_settings = NotificationSettings()
        self.notifier: ManagedProcess | None = None
        self.notify_port = 0
        # Failed health probes in a row, per component; when the next round of probes is due.
        self._failures: dict[str, int] = {}
        self._next_probe = 0.0
        self.state: StackState | None = None
        self._stopping = False
        self._stop_event = threading.Event()
        self._raise_on_signal = True

    # ---------------------------------------------------------------- paths
    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def downloads_dir(self) -> Path:
        return self.data_dir / "downloads"

    @property
    def facade_url(self) -> str:
        return f"http://{self.settings.host}:{self.facade_port}"

    @property
    def notifications_log(self) -> Path:
        return self.log_dir / "notifications.log"

    @property
    def notify_url(self) -> str:
        return f"http://{self.settings.host}:{self.notify_port}"

    # -------------------------------------------------------------- signals
    def install_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_event.set()
        if self._raise_on_signal and not self._stopping:
            raise Shutdown(signal.Signals(signum).name)

    # -------------------------------------------------------------- start-up
    def check_free(self) -> None:
        old = read_state(self.state_path)
        if old is not None and old.supervisor_alive():
            raise AlreadyRunning(
                f"a stack is already running from {self.data_dir} (pid {old.supervisor_pid}); "
                "stop it with `topup down`"
            )
        if old is not None:  # a supervisor that was killed: clear what it left behind
            self.say("cleaning up after a stack that did not shut down cleanly")
            cleanup_dead(old)
            self.state_path.unlink(missing_ok=True)

    def start(self) -> StackState:
        """Start every part; on any failure (or a signal) stop what was started and raise."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.check_free()
        s = self.settings
        self.facade_port = pick_port(s.host, s.facade_port)
        prefect_port = pick_port(s.host, s.prefect_port) if s.prefect_port else 0
        if s.prefect_port and prefect_port != s.prefect_port:
            self.say(f"port {s.prefect_port} is busy; Prefect uses {prefect_port}")
        if s.facade_port and self.facade_port != s.facade_port:
            self.say(f"port {s.facade_port} is busy; the facade uses {self.facade_port}")
        try:
            self._write_state("starting")
            if self.sim_enabled:
                self.say("simulated site: building the tree and starting the sshd pair")
                self.sim = SimStack(
                    self.data_dir / "sim",
                    self.data_dir / "sites",
                    self.downloads_dir,
                    s.sim_site_name,
                ).start(fresh=self.fresh_sim)
                self._write_state("starting")
                if not self.notify_settings.enabled:
                    self.start_notifier()
            self.say("Prefect: server, work pool, deployments, worker")
            self.stack = self._make_stack(prefect_port)
            self.stack.start_server()
            self._write_state("starting")
            self.stack.setup()
            self.stack.prepare_store()
            self.stack.deploy()
            for _ in range(s.workers):
                self.stack.start_worker()
            self.start_recovery()
            self._write_state("starting")
            if self.ha is None:
                self.say("facade: uvicorn")
                self.start_facade()
            else:
                self.say(f"facade: {len(self.facade_ports)} uvicorn processes behind HAProxy")
                for name in self.facade_ports:
                    self.start_ha_facade(name)
                self._wait_facade_url()
            state = self._write_state("up")
        except BaseException:
            self.stop()
            raise
        return state

    def _make_stack(self, port: int) -> PrefectStack:
        """The single-server stack, or with ``ha`` the HA one with the facade's frontend."""
        settings = self._stack_settings(port)
        if self.ha is None:
            return PrefectStack(settings)
        if not settings.topup_database_url:
            settings.topup_database_url = self.ha.outputs_database_url.get_secret_value()
        if not port:  # the balancer's port must be known before the facade's frontend
            settings.port = pick_port(self.settings.host, 0)
        stack = HaPrefectStack(settings, self.ha)
        host = self.settings.host
        self.facade_ports = {f"facade-{i + 1}": pick_port(host, 0) for i in range(self.ha.facades)}
        stack.extra_http = [
            HttpService(
                name="facade",
                binds=[Bind(host=host, port=self.facade_port)],
                backends=[Backend(name=n, host=host, port=p) for n, p in self.facade_ports.items()],
                sticky_cookie=True,
            )
        ]
        return stack

    def _stack_settings(self, port: int) -> StackSettings:
        s = self.settings
        worker_env = {
            "TOPUP_DOWNLOADS_BASE_URL": f"{self.facade_url}/api/downloads",
            "TOPUP_PAUSE_POLL_SECONDS": os.environ.get(
                "TOPUP_PAUSE_POLL_SECONDS", str(s.pause_poll_seconds)
            ),
        }
        return StackSettings(
            data_dir=self.data_dir,
            host=s.host,
            port=port,
            ui=s.ui,
            rounds=s.rounds,
            topup_database_url=os.environ.get("TOPUP_DATABASE_URL"),
            worker_env=worker_env,
            worker_limit=s.worker_limit,
            notifications=self.notify_settings,
            # A loaded machine can take minutes to migrate a fresh database; an operator
            # would rather wait than see the start-up fail.
            start_timeout=600.0,
        )

    def facade_env(self, port: int | None = None) -> dict[str, str]:
        assert self.stack is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.stack.prefect_home),
            PREFECT_API_URL=self.stack.api_url,
            TOPUP_FACADE_PREFECT_API_URL=self.stack.api_url,
            TOPUP_FACADE_HOST=self.settings.host,
            TOPUP_FACADE_PORT=str(port or self.facade_port),
            TOPUP_DATABASE_URL=self.stack.topup_database_url,
            TOPUP_DOWNLOADS_DIR=str(self.downloads_dir),
            PYTHONUNBUFFERED="1",
        )
        return env

    def start_facade(self, timeout: float = 120.0) -> None:
        assert self.stack is not None
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "facade.cli", "serve"]
        self.facade = ManagedProcess(
            "facade",
            argv,
            self.facade_env(),
            self.stack.settings.project_dir,
            self.log_dir / "facade.log",
        ).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.facade.running():
                raise StackError(f"the facade exited:\n{self.facade.log_tail()}")
            if http_ok(f"{self.facade_url}/api/health"):
                return
            time.sleep(0.25)
        raise StackError(f"the facade did not answer /api/health:\n{self.facade.log_tail()}")

    def start_notifier(self, timeout: float = 30.0) -> ManagedProcess:
        """The local webhook receiver (``--sim``): notifications land in notifications_log.

        It must answer before the Prefect set-up creates the automations that post to it.
        """
        if not self.notify_port:
            self.notify_port = pick_port(self.settings.host, self.settings.notify_port)
        self.notify_settings = NotificationSettings(
            webhook_url=SecretStr(f"{self.notify_url}/notify")
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PYTHONUNBUFFERED"] = "1"
        argv = [
            sys.executable, "-m", "topup_cli.notify_receiver",
            "--host", self.settings.host,
            "--port", str(self.notify_port),
            "--log", str(self.notifications_log),
        ]  # fmt: skip
        self.notifier = ManagedProcess(
            "notify-receiver",
            argv,
            env,
            PROJECT_DIR,
            self.log_dir / "notify-receiver.log",
        ).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.notifier.running():
                raise StackError(f"the notification receiver exited:\n{self.notifier.log_tail()}")
            if http_ok(f"{self.notify_url}/health"):
                return self.notifier
            time.sleep(0.1)
        raise StackError("the notification receiver did not answer /health")

    def notifications_text(self) -> str:
        """Where notifications go, without the webhook's path or token."""
        if self.notifier is not None:
            return f"on: local log {self.notifications_log} (receiver {self.notify_url}/notify)"
        if not self.notify_settings.enabled:
            return "off (set TOPUP_NOTIFY_WEBHOOK_URL; `topup up --sim` logs them locally)"
        assert self.notify_settings.webhook_url is not None
        parts = urlsplit(self.notify_settings.webhook_url.get_secret_value())
        return f"on: webhook {parts.scheme}://{parts.hostname or '?'}"

    def start_recovery(self) -> ManagedProcess:
        """The crashed-run recovery loop (deployments/recovery.py), on the stack's API."""
        assert self.stack is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.stack.prefect_home),
            PREFECT_API_URL=self.stack.api_url,
            PYTHONUNBUFFERED="1",
        )
        self.recovery = ManagedProcess(
            "recovery",
            [sys.executable, "-m", "deployments.recovery", "--api-url", self.stack.api_url],
            env,
            self.stack.settings.project_dir,
            self.log_dir / "recovery.log",
        ).start()
        return self.recovery

    def start_ha_facade(self, name: str, timeout: float = 120.0) -> ManagedProcess:
        """Start one facade process of the HA stack on its own port; wait for its health."""
        assert self.stack is not None
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        port = self.facade_ports[name]
        proc = ManagedProcess(
            name,
            [sys.executable, "-m", "facade.cli", "serve"],
            self.facade_env(port),
            self.stack.settings.project_dir,
            self.log_dir / f"{name}.log",
        ).start()
        self.facades[name] = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.running():
                raise StackError(f"{name} exited:\n{proc.log_tail()}")
            if http_ok(f"http://{self.settings.host}:{port}/api/health"):
                return proc
            time.sleep(0.25)
        raise StackError(f"{name} did not answer /api/health:\n{proc.log_tail()}")

    def _wait_facade_url(self, timeout: float = 60.0) -> None:
        """The facade through the load balancer (its health checks have seen a process)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_ok(f"{self.facade_url}/api/health"):
                return
            time.sleep(0.25)
        raise StackError(f"the facade did not answer through the load balancer: {self.facade_url}")

    # ----------------------------------------------------------------- state
    def _components(self) -> list[Component]:
        out: list[Component] = []

        def add(name: str, pid: int | None, **kw: str | None) -> None:
            key = pid_key(pid) if pid else None
            if key is not None:
                out.append(Component(name=name, pid=key[0], start_ticks=key[1], **kw))

        if isinstance(self.stack, HaPrefectStack):
            stack = self.stack
            for i, port in enumerate(stack.api_ports):
                name = stack.api_name(i)
                proc = stack.api_servers.get(name)
                base = f"http://{self.settings.host}:{port}"
                add(
                    name,
                    proc.pid if proc and proc.running() else None,
                    url=base,
                    health_url=f"{base}/api/health",
                    log=str(stack.log_dir / f"{name}.log"),
                )
            if stack.services is not None and stack.services.running():
                add("prefect-services", stack.services.pid, log=str(stack.services.log_path))
            if stack.balancer is not None and stack.balancer.running():
                add(
                    "haproxy",
                    stack.balancer.pid,
                    url=stack.api_url.removesuffix("/api"),
                    health_url=f"{stack.api_url}/health",
                    log=str(stack.balancer.log_path),
                )
        elif self.stack is not None:
            api = self.stack.api_url
            server = self.stack.server
            add(
                "prefect-server",
                server.pid if server else None,
                url=api.removesuffix("/api"),
                health_url=f"{api}/health",
                log=str(self.stack.log_dir / "server.log"),
            )
        if self.stack is not None:
            for name, worker in self.stack.workers.items():
                if worker.running():
                    add(name, worker.pid, log=str(worker.log_path))
        if self.recovery is not None and self.recovery.running():
            add("recovery", self.recovery.pid, log=str(self.recovery.log_path))
        for name, proc in self.facades.items():
            if proc.running():
                base = f"http://{self.settings.host}:{self.facade_ports[name]}"
                add(name, proc.pid, url=f"{base}/docs", health_url=f"{base}/api/health")
        if self.facade is not None and self.facade.running():
            add(
                "facade",
                self.facade.pid,
                url=f"{self.facade_url}/docs",
                health_url=f"{self.facade_url}/api/health",
                log=str(self.facade.log_path),
            )
        if self.notifier is not None and self.notifier.running():
            add(
                "notify-receiver",
                self.notifier.pid,
                url=f"{self.notify_url}/notify",
                health_url=f"{self.notify_url}/health",
                log=str(self.notifier.log_path),
            )
        if self.sim is not None:
            ports = self.sim.ports()
            for role, pid in self.sim.listener_pids().items():
                add(f"sshd-{role}", pid, url=f"ssh://127.0.0.1:{ports[role]}")
        return out

    def _write_state(self, phase: str) -> StackState:
        me = pid_key(os.getpid())
        assert me is not None
        api = self.stack.api_url if self.stack else ""
        self.state = StackState(
            supervisor_pid=me[0],
            supervisor_ticks=me[1],
            data_dir=str(self.data_dir),
            api_url=api,
            ui_url=api.removesuffix("/api") if api and self.settings.ui else None,
            facade_url=self.facade_url,
            log_dir=str(self.log_dir),
            sites_dir=str(self.data_dir / "sites"),
            downloads_dir=str(self.downloads_dir),
            topup_database_url=self.stack.topup_database_url if self.stack else "",
            default_site=self.sim.name if self.sim else "default",
            sim_root=str(self.sim.root) if self.sim else None,
            sshd_dir=str(sshd_dir(self.sim.root)) if self.sim else None,
            components=self._components(),
            notifications=self.notifications_text(),
            notifications_log=str(self.notifications_log) if self.notifier else None,
            phase=phase,
        )
        write_state(self.state_path, self.state)
        return self.state

    # ------------------------------------------------------------ supervision
    def supervise(self, check_seconds: float = 1.0) -> int:
        """Until a signal: restart a dead part, and (every ``health_seconds``) a part that
        stopped answering its health probe; 0 on a requested stop."""
        self._raise_on_signal = False
        self._next_probe = time.monotonic() + self.settings.health_seconds
        while not self._stop_event.wait(check_seconds):
            try:
                changed = self._restart_dead()
                if not self._stop_event.is_set() and time.monotonic() >= self._next_probe:
                    changed = self._restart_unhealthy() or changed
                    self._next_probe = time.monotonic() + self.settings.health_seconds
            except StackError as exc:
                self.say(str(exc))
                return 1
            if changed:
                self._write_state("up")
        return 0

    # ------------------------------------------------------------------ health
    def _probes(self) -> list[tuple[str, Callable[[], Probe], Callable[[], None]]]:
        """(component, probe, restart) of every part that answers on the network; the
        Prefect server first, since the facade's health route asks it."""
        timeout = self.settings.health_timeout
        out: list[tuple[str, Callable[[], Probe], Callable[[], None]]] = []
        stack = self.stack
        if self.ha is None and stack is not None and stack.server is not None:
            out.append(
                (
                    "prefect-server",
                    partial(http_health, f"{stack.api_url}/health", timeout),
                    self._restart_server,
                )
            )
        if self.facade is not None:
            out.append(
                (
                    "facade",
                    partial(http_health, f"{self.facade_url}/api/health", timeout),
                    self._restart_facade,
                )
            )
        if self.notifier is not None:
            out.append(
                (
                    "notify-receiver",
                    partial(http_health, f"{self.notify_url}/health", timeout),
                    self._restart_notifier,
                )
            )
        if self.sim is not None:
            for role, port in self.sim.ports().items():
                if held_by(sshd_dir(self.sim.root), role) is not None:
                    # Down on purpose (`topup-sim net --outage`): not restarted.
                    self._failures.pop(f"sshd-{role}", None)
                    continue
                out.append(
                    (
                        f"sshd-{role}",
                        partial(ssh_handshake, self.settings.host, port, timeout),
                        partial(self._restart_sshd, role),
                    )
                )
        return out

    def _restart_unhealthy(self) -> bool:
        """Probe each part; restart one that failed ``unhealthy_checks`` probes in a row."""
        changed = False
        server_down = False
        for name, probe, restart in self._probes():
            if self._stop_event.is_set():
                break
            if server_down and name in NEEDS_SERVER:
                continue  # its health route asks the server: judged once the server answers
            result = probe()
            if name == "prefect-server":
                server_down = not result.ok
            if result.ok:
                self._failures.pop(name, None)
                continue
            failed = self._failures[name] = self._failures.get(name, 0) + 1
            if failed < self.settings.unhealthy_checks:
                continue
            self._failures.pop(name, None)
            self._count_restart(name)
            self.say(
                f"{name} is unhealthy: {result.reason} ({failed} probes in a row); restarting it"
            )
            restart()
            self.say(f"{name} restarted")
            changed = True
        return changed

    @staticmethod
    def _wake(proc: ManagedProcess) -> None:
        """SIGCONT a stopped tree so that it can act on the SIGTERM of ``stop()``."""
        signal_tree(proc.tree(), signal.SIGCONT)

    def _restart_server(self) -> None:
        """The single server again on the same port and database (workers reconnect)."""
        assert self.stack is not None
        if self.stack.server is not None:
            self._wake(self.stack.server)
        self.stack.restart_server()

    def _restart_facade(self) -> None:
        if self.facade is not None:
            self._wake(self.facade)
            self.facade.stop(timeout=10)
        self.start_facade()

    def _restart_notifier(self) -> None:
        if self.notifier is not None:
            self._wake(self.notifier)
            self.notifier.stop(timeout=10)
        self.start_notifier()

    def _restart_sshd(self, role: str) -> None:
        """A hung sshd listener ignores SIGTERM while stopped: kill it, then start it again
        on the same port with the same host keys (clients' known_hosts still match)."""
        assert self.sim is not None and self.sim.pair is not None
        pid = self.sim.pair.pid(role)  # type: ignore[arg-type]
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.sim.pair.restart(role)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - sshd's own errors, said in one line
            raise StackError(f"sshd-{role} did not start again: {exc}") from None

    def _restart_dead(self) -> bool:
        assert self.stack is not None
        changed = False
        if self.ha is None and (self.stack.server is None or not self.stack.server.running()):
            self._count_restart("prefect-server")
            self.say("the Prefect server exited; restarting it")
            self._restart_server()
            self.say("prefect-server restarted")
            changed = True
        if self.notifier is not None and not self.notifier.running():
            self._count_restart("notify-receiver")
            self.say("the notification receiver exited; restarting it")
            self._restart_notifier()
            changed = True
        for name, worker in list(self.stack.workers.items()):
            if not worker.running():
                self._count_restart(name)
                self.say(f"{name} exited; restarting it")
                self.stack.workers.pop(name, None)
                self.stack.start_worker(name)
                changed = True
        if self.facade is not None and not self.facade.running():
            self._count_restart("facade")
            self.say("the facade exited; restarting it")
            self.start_facade()
            changed = True
        if self.recovery is not None and not self.recovery.running():
            self._count_restart("recovery")
            self.say("the recovery loop exited; restarting it")
            self.start_recovery()
            changed = True
        for name, proc in list(self.facades.items()):
            if not proc.running():
                self._count_restart(name)
                self.say(f"{name} exited; restarting it (the others keep serving)")
                self.start_ha_facade(name)
                changed = True
        if isinstance(self.stack, HaPrefectStack):
            changed = self._restart_dead_servers(self.stack) or changed
        return changed

    def _restart_dead_servers(self, stack: HaPrefectStack) -> bool:
        """HA: an API server, the services process or HAProxy that died is started again."""
        changed = False
        for i in range(len(stack.api_ports)):
            name = stack.api_name(i)
            proc = stack.api_servers.get(name)
            if proc is None or not proc.running():
                self._count_restart(name)
                self.say(f"{name} exited; restarting it (the other API servers keep serving)")
                stack.restart_api_server(i)
                changed = True
        if stack.services is None or not stack.services.running():
            self._count_restart("prefect-services")
            self.say("the Prefect services process exited; restarting it")
            stack.restart_services()
            changed = True
        if stack.balancer is None or not stack.balancer.running():
            self._count_restart("haproxy")
            self.say("HAProxy exited; restarting it")
            stack.start_balancer()
            changed = True
        return changed

    def _count_restart(self, name: str) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        if self.restarts[name] > MAX_RESTARTS:
            raise StackError(f"{name} keeps exiting ({MAX_RESTARTS} restarts); giving up")

    def request_stop(self) -> None:
        self._stop_event.set()

    # --------------------------------------------------------------- shutdown
    def stop(self) -> bool:
        """Facade, workers (and their flow runs), server, sshd pair; True if nothing is left."""
        self._stopping = True
        if self.state_path.exists() and self.state is not None:
            try:
                write_state(self.state_path, self.state.model_copy(update={"phase": "stopping"}))
            except OSError:
                pass
        clean = True
        if self.facade is not None:
            clean = self.facade.stop(timeout=10) and clean
            self.facade = None
        for name in list(self.facades):
            clean = self.facades.pop(name).stop(timeout=10) and clean
        if self.recovery is not None:
            clean = self.recovery.stop(timeout=10) and clean
            self.recovery = None
        if self.stack is not None:
            clean = self.stack.stop() and clean
            self.stack = None
        if self.notifier is not None:  # after the server: its last notifications land
            clean = self.notifier.stop(timeout=10) and clean
            self.notifier = None
        if self.sim is not None:
            clean = self.sim.stop() and clean
            self.sim = None
        if self.state is not None:  # only our own state file, never another stack's
            self.state_path.unlink(missing_ok=True)
            self.state = None
        return clean


def cleanup_dead(state: StackState) -> list[int]:
    """Stop the processes a killed supervisor left behind; the pids that survived."""
    keys = []
    for comp in state.components:
        if comp.alive():
            keys.append(comp.key)
            keys.extend(descendants(comp.pid))
    if keys:
        signal_tree(keys, signal.SIGTERM)
        if not wait_gone(keys, 10.0, lambda: None):
            signal_tree(keys, signal.SIGKILL)
            wait_gone(keys, 5.0, lambda: None)
    left = [k[0] for k in keys if alive(k)]
    if state.sim_root:
        left += stop_leftovers(Path(state.sim_root))
    return left
