"""HAProxy in front of replicated processes: its configuration, rendered, and its process.

Why HAProxy: a real load balancer from the distribution (``apt-get install haproxy``, done by
``scripts/setup.sh``), with active health checks, so a dead API server or facade is taken out
of rotation within a second and a request that could not connect is sent to the other one.

Two kinds of frontends:

- ``HttpService``: HTTP load balancing with a health check (the Prefect API servers, the
  facade processes); WebSocket upgrades (Prefect's event stream, the facade's live updates)
  pass through as tunnels;
- ``TcpRelay``: a plain TCP relay (tests use it as the router of a network namespace).

Every listening address is validated as an IPv4 address and every name as a short slug,
before anything is written: the configuration is a file a process reads, not a shell line.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from topup_cli.processes import ManagedProcess

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")


def _ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(value))


IPv4 = Annotated[str, AfterValidator(_ipv4)]


class Backend(BaseModel):
    """One process behind a frontend."""

    name: str = Field(pattern=NAME.pattern)
    host: IPv4 = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class Bind(BaseModel):
    host: IPv4 = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class HttpService(BaseModel):
    """An HTTP frontend balancing over ``backends``, checked with GET ``health_path``."""

    name: str = Field(pattern=NAME.pattern)
    binds: list[Bind] = Field(min_length=1)
    backends: list[Backend] = Field(min_length=1)
    health_path: str = Field("/api/health", pattern=r"^/[A-Za-z0-9/_.-]*$")
    # Browsers keep to one process (Socket.IO long polling holds its session in one
    # process); clients without cookies are spread round-robin.
    sticky_cookie: bool = False


class TcpRelay(BaseModel):
    """A TCP frontend that relays every connection to one ``target``."""

    name: str = Field(pattern=NAME.pattern)
    binds: list[Bind] = Field(min_length=1)
    target: Backend


class HaproxyConfig(BaseModel):
    http: list[HttpService] = Field(default_factory=list)
    tcp: list[TcpRelay] = Field(default_factory=list)
    # Health checks every check_ms; a backend is out after 2 failed checks, in after 1 pass.
    check_ms: int = Field(500, ge=100, le=10_000)

    def render(self) -> str:
        """The configuration file's text."""
        lines = [
            "# Written by topup_cli.haproxy; regenerated on every start.",
            "global",
            "  maxconn 4096",
            "defaults",
            "  timeout connect 2s",
            "  timeout client 1h",
            "  timeout server 1h",
            # Long-lived WebSocket streams (Prefect events, facade live updates).
            "  timeout tunnel 1h",
            "  timeout http-request 30s",
            # A connection refused by a dead backend is retried on another one: safe for any
            # method, the request never reached a server.
            "  retries 3",
            "  option redispatch",
            "  retry-on conn-failure",
        ]
        for svc in self.http:
            lines += [f"frontend {svc.name}", "  mode http", "  option http-server-close"]
            lines += [f"  bind {b.host}:{b.port}" for b in svc.binds]
            lines += [
                f"  default_backend {svc.name}_servers",
                f"backend {svc.name}_servers",
                "  mode http",
                "  balance roundrobin",
                f"  option httpchk GET {svc.health_path}",
                "  http-check expect status 200",
                f"  default-server inter {self.check_ms} fall 2 rise 1",
            ]
            if svc.sticky_cookie:
                lines.append("  cookie TOPUPSRV insert indirect nocache")
            for b in svc.backends:
                cookie = f" cookie {b.name}" if svc.sticky_cookie else ""
                lines.append(f"  server {b.name} {b.host}:{b.port} check{cookie}")
        for relay in self.tcp:
            lines += [f"listen {relay.name}", "  mode tcp"]
            lines += [f"  bind {b.host}:{b.port}" for b in relay.binds]
            t = relay.target
            lines.append(f"  server {t.name} {t.host}:{t.port}")
        return "\n".join(lines) + "\n"


def haproxy_binary() -> str:
    """The haproxy executable; a clear error when the package is missing."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        raise FileNotFoundError("haproxy is not installed: run `bash scripts/setup.sh`")
    return found


def check_config(path: Path) -> None:
    """``haproxy -c``: refuse a configuration haproxy itself would refuse."""
    res = subprocess.run(
        [haproxy_binary(), "-c", "-q", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if res.returncode != 0:
        raise ValueError(f"haproxy refused {path}: {res.stdout}{res.stderr}")


def start_haproxy(
    name: str, config: HaproxyConfig, conf_path: Path, log_path: Path, env: dict[str, str]
) -> ManagedProcess:
    """Write, check and start haproxy in the foreground (``-db``) as a managed process."""
    conf_path.parent.mkdir(parents=True, exist_ok=True)
    conf_path.write_text(config.render())
    check_config(conf_path)
    return ManagedProcess(
        name, [haproxy_binary(), "-db", "-f", str(conf_path)], env, conf_path.parent, log_path
    ).start()
