"""Topup's own processes next to Prefect's: the facade (or, with ``--ha``, several facades
behind HAProxy), the notification receiver and the crashed-run recovery loop.

Why apart from the supervisor: these processes start, restart, show up in the state file and
stop the same way whatever the Prefect side is; the supervisor only decides when. What each
one is given (command line, environment, log) is in ``topup_cli/service_commands.py``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from deployments.notifications import NotificationSettings
from topup_cli.components import component, running
from topup_cli.haproxy import Backend, Bind, HttpService
from topup_cli.processes import ManagedProcess
from topup_cli.readiness import wait_answering
from topup_cli.service_commands import facade_process, notifier_process, recovery_process
from topup_cli.stack import PrefectStack, StackError
from topup_cli.stack_settings import pick_port
from topup_cli.state import Component


class TopupServices:
    """The facade(s), the notification receiver and the recovery loop of one stack."""

    def __init__(self, host: str, log_dir: Path, downloads_dir: Path, notify_port: int) -> None:
        self.host = host
        self.log_dir = log_dir
        self.downloads_dir = downloads_dir
        self.facade: ManagedProcess | None = None
        self.facade_port = 0
        # HA: facade processes by name, each on its own port behind the load balancer.
        self.facades: dict[str, ManagedProcess] = {}
        self.facade_ports: dict[str, int] = {}
        self.recovery: ManagedProcess | None = None
        # Notifications: the configured webhook, or with --sim (and none configured) the
        # stack's own receiver writing them to notifications_log.
        self.notify_settings = NotificationSettings()
        self.notifier: ManagedProcess | None = None
        self.notify_port = 0
        self._preferred_notify_port = notify_port

    @property
    def facade_url(self) -> str:
        return f"http://{self.host}:{self.facade_port}"

    @property
    def notify_url(self) -> str:
        return f"http://{self.host}:{self.notify_port}"

    @property
    def notifications_log(self) -> Path:
        return self.log_dir / "notifications.log"

    # ---------------------------------------------------------------- facade
    def _facade(self, name: str, stack: PrefectStack, port: int) -> ManagedProcess:
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        return facade_process(
            name, stack, self.host, port, self.downloads_dir, self.log_dir
        ).start()

    def start_facade(self, stack: PrefectStack, timeout: float = 120.0) -> None:
        """The single facade on ``facade_port``; wait for its health route."""
        self.facade = self._facade("facade", stack, self.facade_port)
        health = f"{self.facade_url}/api/health"
        if not wait_answering(health, timeout, self.facade, "the facade"):
            raise StackError(f"the facade did not answer /api/health:\n{self.facade.log_tail()}")

    def restart_facade(self, stack: PrefectStack) -> None:
        """A facade that stopped answering: stopped (woken first if stopped), started again."""
        if self.facade is not None:
            self.facade.wake()
            self.facade.stop(timeout=10)
        self.start_facade(stack)

    def ha_frontend(self, facades: int) -> HttpService:
        """A port for each of ``facades`` processes; the load balancer's frontend to them."""
        host = self.host
        self.facade_ports = {f"facade-{i + 1}": pick_port(host, 0) for i in range(facades)}
        return HttpService(
            name="facade",
            binds=[Bind(host=host, port=self.facade_port)],
            backends=[Backend(name=n, host=host, port=p) for n, p in self.facade_ports.items()],
            sticky_cookie=True,
        )

    def start_ha_facade(
        self, stack: PrefectStack, name: str, timeout: float = 120.0
    ) -> ManagedProcess:
        """Start one facade process of the HA stack on its own port; wait for its health."""
        port = self.facade_ports[name]
        proc = self.facades[name] = self._facade(name, stack, port)
        if not wait_answering(f"http://{self.host}:{port}/api/health", timeout, proc):
            raise StackError(f"{name} did not answer /api/health:\n{proc.log_tail()}")
        return proc

    def wait_balanced_facade(self, timeout: float = 60.0) -> None:
        """The facade through the load balancer (its health checks have seen a process)."""
        if not wait_answering(f"{self.facade_url}/api/health", timeout):
            raise StackError(
                f"the facade did not answer through the load balancer: {self.facade_url}"
            )

    # --------------------------------------------------------- notifications
    def start_notifier(self, timeout: float = 30.0) -> ManagedProcess:
        """The local webhook receiver (``--sim``): notifications land in notifications_log.

        It must answer before the Prefect set-up creates the automations that post to it.
        """
        if not self.notify_port:
            self.notify_port = pick_port(self.host, self._preferred_notify_port)
        self.notify_settings = NotificationSettings(
            webhook_url=SecretStr(f"{self.notify_url}/notify")
        )
        self.notifier = notifier_process(
            self.host, self.notify_port, self.notifications_log, self.log_dir
        ).start()
        health = f"{self.notify_url}/health"
        if not wait_answering(health, timeout, self.notifier, "the notification receiver", 0.1):
            raise StackError("the notification receiver did not answer /health")
        return self.notifier

    def restart_notifier(self) -> None:
        if self.notifier is not None:
            self.notifier.wake()
            self.notifier.stop(timeout=10)
        self.start_notifier()

    def notifications_text(self) -> str:
        """Where notifications go, without the webhook's path or token."""
        if self.notifier is not None:
            return f"on: local log {self.notifications_log} (receiver {self.notify_url}/notify)"
        if not self.notify_settings.enabled:
            return "off (set TOPUP_NOTIFY_WEBHOOK_URL; `topup up --sim` logs them locally)"
        assert self.notify_settings.webhook_url is not None
        parts = urlsplit(self.notify_settings.webhook_url.get_secret_value())
        return f"on: webhook {parts.scheme}://{parts.hostname or '?'}"

    # -------------------------------------------------------------- recovery
    def start_recovery(self, stack: PrefectStack) -> ManagedProcess:
        """The crashed-run recovery loop (deployments/recovery.py), on the stack's API."""
        self.recovery = recovery_process(stack, self.log_dir).start()
        return self.recovery

    # ----------------------------------------------------- state and shutdown
    def components(self) -> list[Component]:
        """The recovery loop, the facade(s) and the receiver, for the state file."""
        out: list[Component] = []
        if self.recovery is not None:
            out.append(
                component("recovery", running(self.recovery), log=str(self.recovery.log_path))
            )
        for name, proc in self.facades.items():
            base = f"http://{self.host}:{self.facade_ports[name]}"
            out.append(
                component(name, running(proc), url=f"{base}/docs", health_url=f"{base}/api/health")
            )
        for name, proc, url, health_url in (
            ("facade", self.facade, f"{self.facade_url}/docs", f"{self.facade_url}/api/health"),
            (
                "notify-receiver",
                self.notifier,
                f"{self.notify_url}/notify",
                f"{self.notify_url}/health",
            ),
        ):
            if proc is not None:
                log = str(proc.log_path)
                out.append(component(name, running(proc), url=url, health_url=health_url, log=log))
        return out

    def stop_api_clients(self) -> bool:
        """The facade(s) and the recovery loop, before the Prefect server they ask; True if
        nothing is left."""
        clean = True
        if self.facade is not None:
            clean = self.facade.stop(timeout=10) and clean
            self.facade = None
        for name in list(self.facades):
            clean = self.facades.pop(name).stop(timeout=10) and clean
        if self.recovery is not None:
            clean = self.recovery.stop(timeout=10) and clean
            self.recovery = None
        return clean

    def stop_notifier(self) -> bool:
        """After the Prefect server, so that its last notifications land."""
        if self.notifier is None:
            return True
        clean = self.notifier.stop(timeout=10)
        self.notifier = None
        return clean
