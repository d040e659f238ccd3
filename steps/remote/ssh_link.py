"""The SSH connection to the login node: set-up through the jump host, and reconnecting.

Kept apart from what runs over the connection (ssh_command.py, sftp.py) because opening
the two hops is where paramiko's many exceptions are turned into our short, secret-free
errors, and because the shared connection's lifecycle (one per transport, replaced when it
dies) needs its own lock. Host keys are checked against a known_hosts file (hostkeys.py).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from fabric import Config, Connection
from paramiko import Channel
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    ChannelException,
    NoValidConnectionsError,
    SSHException,
)

from steps.config import HostSettings, SiteSettings
from steps.remote import instrument
from steps.remote.errors import AuthenticationError, HostKeyError, RemoteConnectionError
from steps.remote.hostkeys import configure_client, mismatch_error
from steps.remote.transport import TransportStats

log = logging.getLogger("topup.remote")

# Network-level failures of an established connection.
NET_ERRORS = (SSHException, EOFError, OSError, socket.timeout)


def label(hop: HostSettings) -> str:
    """``host:port``, how hops are named in logs and errors."""
    return f"{hop.host}:{hop.port}"


class _Connection(Connection):
    """fabric's Connection with a time limit on opening the jump host's forwarding channel."""

    def open_gateway(self) -> Channel:  # type: ignore[override]
        self.gateway.open()
        return self.gateway.transport.open_channel(
            kind="direct-tcpip",
            dest_addr=(self.host, int(self.port)),
            src_addr=("", 0),
            timeout=self.__dict__.get("_gateway_timeout"),
        )


def _connect_kwargs(settings: SiteSettings, hop: HostSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "timeout": settings.connect_timeout,
        "banner_timeout": settings.connect_timeout,
        "auth_timeout": settings.connect_timeout,
        "channel_timeout": settings.connect_timeout,
    }
    if hop.key_file is not None:
        kwargs["key_filename"] = [str(Path(hop.key_file).expanduser())]
    if hop.password is not None:
        kwargs["password"] = hop.password.get_secret_value()
    if hop.key_file is not None or hop.password is not None:
        # Explicit credentials: do not wander through ~/.ssh or an agent.
        kwargs["look_for_keys"] = False
        kwargs["allow_agent"] = False
    return kwargs


def _make(settings: SiteSettings, hop: HostSettings, gateway: Connection | None) -> Connection:
    conn = _Connection(
        hop.host,
        user=hop.user,
        port=hop.port,
        gateway=gateway,
        config=Config(overrides={"load_ssh_configs": False}),
        connect_kwargs=_connect_kwargs(settings, hop),
    )
    # fabric routes unknown attribute writes into its config: store it on the instance.
    conn.__dict__["_gateway_timeout"] = settings.connect_timeout
    configure_client(
        conn.client,
        label(hop),
        Path(settings.known_hosts_file).expanduser(),
        settings.accept_new_host_keys,
    )
    return conn


def _open_hop(settings: SiteSettings, conn: Connection, hop: HostSettings) -> None:
    """Open one hop, turning paramiko's exceptions into short, secret-free errors."""
    where = label(hop)
    known = Path(settings.known_hosts_file).expanduser()
    try:
        conn.open()
    except HostKeyError:
        raise
    except BadHostKeyException as exc:
        raise mismatch_error(where, known, exc) from None
    except AuthenticationException:
        raise AuthenticationError(f"authentication failed for {hop.user}@{where}") from None
    except ChannelException as exc:
        raise RemoteConnectionError(
            f"jump host refused forwarding to {where}: {exc.text}"
        ) from None
    except (*NET_ERRORS, ValueError) as exc:
        cause = _root_cause(exc)
        raise RemoteConnectionError(
            f"cannot connect to {where}: {type(cause).__name__}: {cause}"
        ) from None
    assert conn.transport is not None
    conn.transport.set_keepalive(settings.keepalive_seconds)
    if isinstance(conn.transport.sock, socket.socket):
        # Every command is a few small SSH packets (channel open, exec, EOF, close);
        # with Nagle's algorithm each exchange waited for the peer's delayed ACK, ~40 ms a
        # command through the jump host (bench/: 44 ms -> 0.4 ms per session channel).
        conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def alive(conn: Connection) -> bool:
    """Both hops' transports still active."""
    t = conn.transport
    if t is None or not t.is_active():
        return False
    gw = conn.gateway
    if isinstance(gw, Connection):
        return gw.transport is not None and gw.transport.is_active()
    return True


def close_quietly(conn: Connection) -> None:
    """Close both hops; a broken connection's close errors are only logged (debug)."""
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways
        log.debug("error while closing SSH connection", exc_info=True)
    gw = conn.gateway
    if isinstance(gw, Connection):
        try:
            gw.close()
        except Exception:  # noqa: BLE001
            log.debug("error while closing gateway connection", exc_info=True)


def _root_cause(exc: BaseException) -> BaseException:
    """paramiko wraps a refused connect in NoValidConnectionsError; show the socket error."""
    if isinstance(exc, NoValidConnectionsError) and exc.errors:
        return next(iter(exc.errors.values()))
    return exc


class SshLink:
    """The one connection a transport's threads share, reopened when it drops.

    Each opened connection gets a generation number, so a thread that found the connection
    broken drops only the one it used, never a replacement another thread already opened.
    """

    def __init__(
        self, settings: SiteSettings, stats: TransportStats, stats_lock: threading.Lock
    ) -> None:
        self.settings = settings
        self._stats = stats
        self._stats_lock = stats_lock
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._generation = 0

    def _open(self) -> Connection:
        s = self.settings
        began = time.monotonic()
        gateway = _make(s, s.jump, None) if s.jump is not None else None
        conn = _make(s, s.login, gateway)
        try:
            if gateway is not None and s.jump is not None:
                _open_hop(s, gateway, s.jump)
            _open_hop(s, conn, s.login)
        except BaseException:
            close_quietly(conn)
            raise
        with self._stats_lock:
            self._stats.sessions += 1
        instrument.emit("session", time.monotonic() - began, label(s.login))
        log.info(
            "SSH session %d open to %s%s",
            self._stats.sessions,
            label(s.login),
            f" via {label(s.jump)}" if s.jump is not None else "",
        )
        return conn

    def current(self) -> tuple[Connection, int]:
        """The live connection (re-opened if it dropped) and its generation number."""
        with self._lock:
            if self._conn is None or not alive(self._conn):
                if self._conn is not None:
                    log.warning("SSH session to %s dropped; reconnecting", self.settings.login.host)
                    close_quietly(self._conn)
                    self._conn = None
                self._conn = self._open()
                self._generation += 1
            return self._conn, self._generation

    def drop(self, generation: int) -> None:
        """Forget a connection found broken (unless another thread already replaced it)."""
        with self._lock:
            if self._conn is not None and generation == self._generation:
                close_quietly(self._conn)
                self._conn = None

    def forget_if_dead(self, conn: Connection, generation: int) -> None:
        """Drop ``conn`` only if it is really dead (a failed channel may leave it usable)."""
        if not alive(conn):
            self.drop(generation)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                close_quietly(self._conn)
                self._conn = None
