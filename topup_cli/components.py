"""The state file's list of live processes, each with its URLs and log: the Prefect side
and the simulated site's sshd pair (``TopupServices`` lists its own processes).

Why apart from the supervisor: ``topup status`` and ``topup down`` find the stack's
processes only through this list, so what it holds for each kind of stack (one server, or
API servers, services and HAProxy) is worth reading in one place.
"""

from __future__ import annotations

from topup_cli.ha import HaPrefectStack
from topup_cli.processes import ManagedProcess
from topup_cli.simsite import SimStack
from topup_cli.stack import PrefectStack
from topup_cli.state import Component, pid_key


def component(name: str, pid: int | None, **urls_and_log: str | None) -> Component:
    """The process as a component (pid and start time); one that is gone (between its
    death and its restart) stays listed without a pid, so ``topup status`` shows it down
    instead of a stack that looks whole without it."""
    key = pid_key(pid) if pid else None
    if key is None:
        return Component(name=name, **urls_and_log)
    return Component(name=name, pid=key[0], start_ticks=key[1], **urls_and_log)


def running(proc: ManagedProcess | None) -> int | None:
    """The pid of a process that runs, else None."""
    return proc.pid if proc is not None and proc.running() else None


def prefect_components(stack: PrefectStack, host: str) -> list[Component]:
    """The Prefect server (or the HA stack's server side), then the workers."""
    out = _ha_servers(stack, host) if isinstance(stack, HaPrefectStack) else _server(stack)
    for name, worker in stack.workers.items():
        out.append(component(name, running(worker), log=str(worker.log_path)))
    return out


def _server(stack: PrefectStack) -> list[Component]:
    api = stack.api_url
    server = component(
        "prefect-server",
        stack.server.pid if stack.server else None,
        url=api.removesuffix("/api"),
        health_url=f"{api}/health",
        log=str(stack.log_dir / "server.log"),
    )
    return [server]


def _ha_servers(stack: HaPrefectStack, host: str) -> list[Component]:
    out: list[Component] = []
    for i, port in enumerate(stack.api_ports):
        name = stack.api_name(i)
        base = f"http://{host}:{port}"
        out.append(
            component(
                name,
                running(stack.api_servers.get(name)),
                url=base,
                health_url=f"{base}/api/health",
                log=str(stack.log_dir / f"{name}.log"),
            )
        )
    if stack.services is not None:
        out.append(
            component("prefect-services", running(stack.services), log=str(stack.services.log_path))
        )
    if stack.balancer is not None:
        out.append(
            component(
                "haproxy",
                running(stack.balancer),
                url=stack.api_url.removesuffix("/api"),
                health_url=f"{stack.api_url}/health",
                log=str(stack.balancer.log_path),
            )
        )
    return out


def sshd_components(sim: SimStack) -> list[Component]:
    """Each listener of the sshd pair, with its ``ssh://`` URL (``topup status`` handshakes)."""
    ports = sim.ports()
    out: list[Component] = []
    for role, pid in sim.listener_pids().items():
        out.append(component(f"sshd-{role}", pid, url=f"ssh://127.0.0.1:{ports[role]}"))
    return out
