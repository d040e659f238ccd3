"""``topup up``: start the whole stack, keep it running, and take it down cleanly.

Order: the simulated site first (its site file must exist before any flow run reads it),
then the Prefect stack (server with UI, pool and limits, ``prefect deploy --all``, worker),
then the facade (uvicorn in its own process). The state file is written once everything
answers; ``topup down`` signals the supervisor, which stops the parts in reverse order. A
part that dies or stops answering is restarted (a restart that fails is tried again after a
pause); one that keeps dying ends the stack.

With ``ha`` (``topup up --ha``) the Prefect side is ``topup_cli.ha.HaPrefectStack`` (API
servers + services process on PostgreSQL and Redis, behind HAProxy) and the facade runs as
several processes behind the same HAProxy; any of those processes that dies is restarted
while the others keep serving.

Here: the order of the start-up and the shutdown, the state file, and which part is found
dead or unhealthy. Elsewhere: the facade, receiver and recovery processes
(``topup_services.py``, their command lines in ``service_commands.py``), the restart policy
(``restarts.py``), waiting for a health route (``readiness.py``), the state file's component
list (``components.py``) and the clean-up after a killed supervisor (``leftovers.py``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from types import FrameType

from sim.sshd import held_by
from topup_cli.components import prefect_components, sshd_components
from topup_cli.ha import HaPrefectStack, HaSettings
from topup_cli.health import http_health, ssh_handshake
from topup_cli.leftovers import cleanup_dead
from topup_cli.processes import ManagedProcess
from topup_cli.restarts import Check, Exited, RestartPolicy
from topup_cli.settings import CliSettings
from topup_cli.simsite import SimStack, sshd_dir
from topup_cli.stack import PrefectStack, StackError, StackSettings
from topup_cli.stack_settings import pick_port
from topup_cli.state import Component, StackState, pid_key, read_state, write_state
from topup_cli.topup_services import TopupServices


class Shutdown(BaseException):
    """Raised by the signal handler while the stack is starting: abort the start-up."""


class AlreadyRunning(RuntimeError):
    """Another ``topup up`` owns this data dir."""


def ended(proc: ManagedProcess | None) -> bool:
    """A process that was started and no longer runs."""
    return proc is not None and not proc.running()


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
        self.services = TopupServices(
            settings.host, self.log_dir, self.downloads_dir, settings.notify_port
        )
        self.policy = RestartPolicy(settings.unhealthy_checks, say)
        self._next_probe = 0.0  # when the next round of health probes is due
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
        return self.services.facade_url

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
        s, svc = self.settings, self.services
        svc.facade_port = pick_port(s.host, s.facade_port)
        prefect_port = pick_port(s.host, s.prefect_port) if s.prefect_port else 0
        if s.prefect_port and prefect_port != s.prefect_port:
            self.say(f"port {s.prefect_port} is busy; Prefect uses {prefect_port}")
        if s.facade_port and svc.facade_port != s.facade_port:
            self.say(f"port {s.facade_port} is busy; the facade uses {svc.facade_port}")
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
                if not svc.notify_settings.enabled:
                    svc.start_notifier()
            self.say("Prefect: server, work pool, deployments, worker")
            self.stack = stack = self._make_stack(prefect_port)
            stack.start_server()
            self._write_state("starting")
            stack.setup()
            stack.prepare_store()
            stack.deploy()
            for _ in range(s.workers):
                stack.start_worker()
            svc.start_recovery(stack)
            self._write_state("starting")
            if self.ha is None:
                self.say("facade: uvicorn")
                svc.start_facade(stack)
            else:
                self.say(f"facade: {len(svc.facade_ports)} uvicorn processes behind HAProxy")
                for name in svc.facade_ports:
                    svc.start_ha_facade(stack, name)
                svc.wait_balanced_facade()
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
        stack.extra_http = [self.services.ha_frontend(self.ha.facades)]
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
            notifications=self.services.notify_settings,
            # A loaded machine can take minutes to migrate a fresh database; an operator
            # would rather wait than see the start-up fail.
            start_timeout=600.0,
        )

    # ----------------------------------------------------------------- state
    def _components(self) -> list[Component]:
        out = prefect_components(self.stack, self.settings.host) if self.stack else []
        out += self.services.components()
        if self.sim is not None:
            out += sshd_components(self.sim)
        return out

    def _write_state(self, phase: str) -> StackState:
        me = pid_key(os.getpid())
        assert me is not None
        api = self.stack.api_url if self.stack else ""
        svc = self.services
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
            notifications=svc.notifications_text(),
            notifications_log=str(svc.notifications_log) if svc.notifier else None,
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
                changed = self.policy.restart_exited(self._exited())
                if not self._stop_event.is_set() and time.monotonic() >= self._next_probe:
                    checks = self._checks()
                    changed = self.policy.restart_unhealthy(checks, self._stop_event) or changed
                    self._next_probe = time.monotonic() + self.settings.health_seconds
            except StackError as exc:
                self.say(str(exc))
                return 1
            if changed:
                self._write_state("up")
        return 0

    def request_stop(self) -> None:
        self._stop_event.set()

    def _exited(self) -> Iterator[Exited]:
        """Each part whose process ended, found one after the other as the previous one is
        restarted (the Prefect server first)."""
        stack, svc = self.stack, self.services
        assert stack is not None
        if self.ha is None and (stack.server is None or not stack.server.running()):
            yield Exited(
                "prefect-server",
                "the Prefect server exited; restarting it",
                self._restart_server,
                done="prefect-server restarted",
            )
        if ended(svc.notifier):
            yield Exited(
                "notify-receiver",
                "the notification receiver exited; restarting it",
                svc.restart_notifier,
            )
        for name, worker in list(stack.workers.items()):
            if not worker.running():
                yield Exited(name, f"{name} exited; restarting it", partial(self._new_worker, name))
        if ended(svc.facade):
            yield Exited(
                "facade", "the facade exited; restarting it", partial(svc.start_facade, stack)
            )
        if ended(svc.recovery):
            yield Exited(
                "recovery",
                "the recovery loop exited; restarting it",
                partial(svc.start_recovery, stack),
            )
        for name, proc in list(svc.facades.items()):
            if not proc.running():
                yield Exited(
                    name,
                    f"{name} exited; restarting it (the others keep serving)",
                    partial(svc.start_ha_facade, stack, name),
                )
        if isinstance(stack, HaPrefectStack):
            yield from _ha_servers_exited(stack)

    def _checks(self) -> list[Check]:
        """Every part that answers on the network; the Prefect server first, since the
        facade's health route asks it."""
        timeout = self.settings.health_timeout
        stack, svc = self.stack, self.services
        out: list[Check] = []
        if self.ha is None and stack is not None and stack.server is not None:
            health = partial(http_health, f"{stack.api_url}/health", timeout)
            out.append(Check("prefect-server", health, self._restart_server))
        if svc.facade is not None and stack is not None:
            health = partial(http_health, f"{svc.facade_url}/api/health", timeout)
            out.append(Check("facade", health, partial(svc.restart_facade, stack)))
        if svc.notifier is not None:
            health = partial(http_health, f"{svc.notify_url}/health", timeout)
            out.append(Check("notify-receiver", health, svc.restart_notifier))
        if self.sim is not None:
            for role, port in self.sim.ports().items():
                if held_by(sshd_dir(self.sim.root), role) is not None:
                    # Down on purpose (`topup-sim net --outage`): not restarted.
                    self.policy.forget(f"sshd-{role}")
                    continue
                shake = partial(ssh_handshake, self.settings.host, port, timeout)
                out.append(Check(f"sshd-{role}", shake, partial(self._restart_sshd, role)))
        return out

    def _restart_server(self) -> None:
        """The single server again on the same port and database (workers reconnect)."""
        assert self.stack is not None
        if self.stack.server is not None:
            self.stack.server.wake()
        self.stack.restart_server()

    def _new_worker(self, name: str) -> None:
        """A worker of the same name in place of the one that exited."""
        assert self.stack is not None
        self.stack.workers.pop(name, None)
        self.stack.start_worker(name)

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

    # --------------------------------------------------------------- shutdown
    def stop(self) -> bool:
        """Facade, workers (and their flow runs), server, sshd pair; True if nothing is left."""
        self._stopping = True
        if self.state_path.exists() and self.state is not None:
            try:
                write_state(self.state_path, self.state.model_copy(update={"phase": "stopping"}))
            except OSError:
                pass
        clean = self.services.stop_api_clients()
        if self.stack is not None:
            clean = self.stack.stop() and clean
            self.stack = None
        clean = self.services.stop_notifier() and clean  # after the server: its last notices
        if self.sim is not None:
            clean = self.sim.stop() and clean
            self.sim = None
        if self.state is not None:  # only our own state file, never another stack's
            self.state_path.unlink(missing_ok=True)
            self.state = None
        return clean


def _ha_servers_exited(stack: HaPrefectStack) -> Iterator[Exited]:
    """HA: an API server, the services process or HAProxy whose process ended."""
    for i in range(len(stack.api_ports)):
        name = stack.api_name(i)
        proc = stack.api_servers.get(name)
        if proc is None or not proc.running():
            yield Exited(
                name,
                f"{name} exited; restarting it (the other API servers keep serving)",
                partial(stack.restart_api_server, i),
            )
    if stack.services is None or not stack.services.running():
        yield Exited(
            "prefect-services",
            "the Prefect services process exited; restarting it",
            stack.restart_services,
        )
    if stack.balancer is None or not stack.balancer.running():
        yield Exited("haproxy", "HAProxy exited; restarting it", stack.start_balancer)
