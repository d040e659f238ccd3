"""SshTransport: one fabric Connection to the login node through the jump host.

What the legacy transport got wrong and this one does not (spec steps-0-2 §2):
- a command's time limit is enforced on the remote too (``timeout`` kills its process
  group), so a timed-out command is not left running as an orphan;
- stdout and stderr are drained while waiting, so large outputs cannot stall the channel,
  and background children holding stdout cannot block the call past a short grace;
- transient faults are absorbed here, with a short backoff (steps/remote/retry.py): a
  connect, jump forwarding or session channel that fails is tried again, and so is a
  command that provably did not start; a command that may have run is tried again only
  when the caller declared it idempotent; an SFTP download whose channel or connection
  died resumes where it stopped;
- host keys are checked against a known_hosts file (no AutoAddPolicy).
Passwords are only handed to paramiko; they never appear in logs or exceptions.
"""

from __future__ import annotations

import base64
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fabric import Config, Connection
from paramiko import Channel, SFTPClient
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    ChannelException,
    NoValidConnectionsError,
    SSHException,
)

from steps.config import HostSettings, SiteSettings
from steps.remote import instrument, validate
from steps.remote.errors import (
    AuthenticationError,
    DownloadError,
    HostKeyError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeout,
)
from steps.remote.history import record_command
from steps.remote.hostkeys import configure_client, mismatch_error
from steps.remote.output import CappedBuffer
from steps.remote.retry import Recovery, with_backoff
from steps.remote.transport import CommandResult, TransportStats

log = logging.getLogger("topup.remote")
_T = TypeVar("_T")

# Network-level failures of an established connection.
_NET_ERRORS = (SSHException, EOFError, OSError, socket.timeout)
# Bytes read per SFTP request while downloading (paramiko's own read size), and bytes
# requested ahead at once: a download resumes after the last complete window.
_CHUNK = 32768
_WINDOW = 1 << 20


def remote_command(command: str, timeout: float, kill_after: float) -> str:
    """The line sent to sshd: ``command`` under GNU ``timeout`` in its own process group.

    The command travels base64-encoded so that whatever the login shell is (bash, tcsh)
    it sees only safe characters; bash decodes and evaluates it. ``timeout`` signals the
    whole group on expiry (TERM, then KILL ``kill_after`` seconds later).
    """
    payload = base64.b64encode(command.encode()).decode()
    inner = f'eval "$(printf %s {payload} | base64 -d)"'
    limit = f"-s TERM -k {kill_after:g}s {max(timeout, 0.001):.3f}s"
    # "; exit $?" makes the login shell report a death by signal as 128+N (exit-status),
    # as the local transport does, instead of an exit-signal that paramiko ignores.
    return f"timeout {limit} bash -c {validate.q(inner)}; exit $?"


def sftp_path(remote_path: str) -> str:
    """SFTP paths are relative to the login directory: ``~/x`` becomes ``x``."""
    remote_path = validate.path(remote_path)
    if remote_path == "~":
        return "."
    if remote_path.startswith("~/"):
        return remote_path[2:] or "."
    return remote_path


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


class SshTransport:
    """Runs commands on the login node over one reused SSH connection."""

    def __init__(
        self,
        settings: SiteSettings,
        *,
        kill_after: float = 5.0,
        grace: float = 3.0,
        drain_grace: float = 1.0,
        max_channels: int = 8,
    ) -> None:
        self.settings = settings
        self.stats = TransportStats()
        self.kill_after = kill_after  # remote: KILL this long after TERM
        self.grace = grace  # local: wait at most timeout + grace
        self.drain_grace = drain_grace  # after exit: keep reading this long for late output
        self._lock = threading.RLock()
        self._stats_lock = threading.Lock()
        self._conn: Connection | None = None
        self._generation = 0
        # sshd refuses more than MaxSessions (default 10) channels per connection: extra
        # callers (Prefect threads) wait for a free slot instead of failing.
        self._slots = threading.BoundedSemaphore(max_channels)

    # ------------------------------------------------------------ connection
    @staticmethod
    def _label(hop: HostSettings) -> str:
        return f"{hop.host}:{hop.port}"

    def _connect_kwargs(self, hop: HostSettings) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "timeout": s.connect_timeout,
            "banner_timeout": s.connect_timeout,
            "auth_timeout": s.connect_timeout,
            "channel_timeout": s.connect_timeout,
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

    def _make(self, hop: HostSettings, gateway: Connection | None) -> Connection:
        conn = _Connection(
            hop.host,
            user=hop.user,
            port=hop.port,
            gateway=gateway,
            config=Config(overrides={"load_ssh_configs": False}),
            connect_kwargs=self._connect_kwargs(hop),
        )
        # fabric routes unknown attribute writes into its config: store it on the instance.
        conn.__dict__["_gateway_timeout"] = self.settings.connect_timeout
        configure_client(
            conn.client,
            self._label(hop),
            Path(self.settings.known_hosts_file).expanduser(),
            self.settings.accept_new_host_keys,
        )
        return conn

    def _open_hop(self, conn: Connection, hop: HostSettings) -> None:
        """Open one hop, turning paramiko's exceptions into short, secret-free errors."""
        label = self._label(hop)
        known = Path(self.settings.known_hosts_file).expanduser()
        try:
            conn.open()
        except HostKeyError:
            raise
        except BadHostKeyException as exc:
            raise mismatch_error(label, known, exc) from None
        except AuthenticationException:
            raise AuthenticationError(f"authentication failed for {hop.user}@{label}") from None
        except ChannelException as exc:
            raise RemoteConnectionError(
                f"jump host refused forwarding to {label}: {exc.text}"
            ) from None
        except (*_NET_ERRORS, ValueError) as exc:
            cause = _root_cause(exc)
            raise RemoteConnectionError(
                f"cannot connect to {label}: {type(cause).__name__}: {cause}"
            ) from None
        assert conn.transport is not None
        conn.transport.set_keepalive(self.settings.keepalive_seconds)
        if isinstance(conn.transport.sock, socket.socket):
            # Every command is a few small SSH packets (channel open, exec, EOF, close);
            # with Nagle's algorithm each exchange waited for the peer's delayed ACK, ~40 ms a
            # command through the jump host (bench/: 44 ms -> 0.4 ms per session channel).
            conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _open(self) -> Connection:
        s = self.settings
        began = time.monotonic()
        gateway = self._make(s.jump, None) if s.jump is not None else None
        conn = self._make(s.login, gateway)
        try:
            if gateway is not None and s.jump is not None:
                self._open_hop(gateway, s.jump)
            self._open_hop(conn, s.login)
        except BaseException:
            _close_quietly(conn)
            raise
        with self._stats_lock:
            self.stats.sessions += 1
        instrument.emit("session", time.monotonic() - began, self._label(s.login))
        log.info(
            "SSH session %d open to %s%s",
            self.stats.sessions,
            self._label(s.login),
            f" via {self._label(s.jump)}" if s.jump is not None else "",
        )
        return conn

    @staticmethod
    def _alive(conn: Connection) -> bool:
        t = conn.transport
        if t is None or not t.is_active():
            return False
        gw = conn.gateway
        if isinstance(gw, Connection):
            return gw.transport is not None and gw.transport.is_active()
        return True

    def _current(self) -> tuple[Connection, int]:
        """The live connection (re-opened if it dropped) and its generation number."""
        with self._lock:
            if self._conn is None or not self._alive(self._conn):
                if self._conn is not None:
                    log.warning("SSH session to %s dropped; reconnecting", self.settings.login.host)
                    _close_quietly(self._conn)
                    self._conn = None
                self._conn = self._open()
                self._generation += 1
            return self._conn, self._generation

    def _drop(self, generation: int) -> None:
        """Forget a connection found broken (unless another thread already replaced it)."""
        with self._lock:
            if self._conn is not None and generation == self._generation:
                _close_quietly(self._conn)
                self._conn = None

    # ----------------------------------------------------------------- retries
    def _record(self, rec: Recovery) -> None:
        with self._stats_lock:
            self.stats.retries += rec.retries
            self.stats.retry_seconds += rec.lost_seconds

    def _retrying(
        self, what: str, attempt: Callable[[], _T], may_retry: Callable[[RemoteError], bool]
    ) -> _T:
        return with_backoff(
            what,
            attempt,
            may_retry=may_retry,
            budget=self.settings.ssh_retry_seconds,
            log=log,
            record=self._record,
        )

    # --------------------------------------------------------------- commands
    def run(self, command: str, timeout: float, *, idempotent: bool = False) -> CommandResult:
        """Run ``command``; connection faults before it started are retried with backoff,
        faults after it may have started only when ``idempotent``."""
        wire = remote_command(command, timeout, self.kill_after)

        def attempt() -> CommandResult:
            conn, gen = self._current()
            chan = self._open_channel(conn, gen)
            return self._execute(conn, gen, chan, command, wire, timeout)

        def may_retry(exc: RemoteError) -> bool:
            if not isinstance(exc, RemoteConnectionError) or exc.permanent:
                return False
            return idempotent or not exc.may_have_run

        with self._slots:
            return self._retrying(
                f"SSH command to {self._label(self.settings.login)}", attempt, may_retry
            )

    def _open_channel(self, conn: Connection, gen: int) -> Channel:
        """A new session channel. If that fails the command cannot have started; the
        connection is dropped only if it is really dead (a refused channel on a live
        connection must not break the commands running on it)."""
        try:
            assert conn.transport is not None
            return conn.transport.open_session(timeout=self.settings.connect_timeout)
        except _NET_ERRORS as exc:
            label = self._label(self.settings.login)
            if self._alive(conn):
                raise RemoteConnectionError(
                    f"{label} refused a new session: {type(exc).__name__}: {exc}"
                ) from None
            self._drop(gen)
            raise RemoteConnectionError(
                f"cannot open a session on {label}: {type(exc).__name__}: {exc}"
            ) from None

    def _execute(
        self, conn: Connection, gen: int, chan: Channel, command: str, wire: str, timeout: float
    ) -> CommandResult:
        record_command(self.stats, command, self._stats_lock)
        start = time.monotonic()
        try:
            chan.exec_command(wire)
            chan.shutdown_write()  # the command reads EOF from stdin, never waits on it
            result = self._collect(conn, chan, command, timeout, start)
        except (RemoteTimeout, RemoteConnectionError):
            raise
        except _NET_ERRORS as exc:
            self._drop(gen)
            raise _may_have_run(
                RemoteConnectionError(
                    "connection lost while running a command (it may have started on the "
                    f"remote): {type(exc).__name__}: {exc}"
                )
            ) from None
        finally:
            chan.close()
            spent = time.monotonic() - start
            with self._stats_lock:
                self.stats.command_seconds += spent
            instrument.emit("command", spent, command)
        if result is None:
            self._drop(gen)
            raise _may_have_run(
                RemoteConnectionError(
                    "connection lost while running a command (it may still run on the remote)"
                )
            )
        return result

    def _collect(
        self, conn: Connection, chan: Channel, command: str, timeout: float, start: float
    ) -> CommandResult | None:
        """Drain output until exit status (+ short drain); None if the connection died."""
        out, err = CappedBuffer(), CappedBuffer()
        deadline = start + timeout + self.grace
        while not chan.exit_status_ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("command timed out after %.1fs (killed on the remote)", timeout)
                raise RemoteTimeout(command, timeout)
            select.select([chan], [], [], min(remaining, 0.5))
            _read_available(chan, out, err)
        # Exit status (or closure) seen: output sent just before it may still be in flight;
        # children that keep stdout open must not hold us longer than drain_grace.
        drain_until = time.monotonic() + self.drain_grace
        while True:
            _read_available(chan, out, err)
            if chan.eof_received or chan.closed:
                _read_available(chan, out, err)
                break
            remaining = drain_until - time.monotonic()
            if remaining <= 0:
                break
            select.select([chan], [], [], min(remaining, 0.2))
        duration = time.monotonic() - start
        code = chan.exit_status
        if code == -1 and not self._alive(conn):
            return None
        if code in (124, 137) and duration >= timeout - 0.05:
            # GNU timeout's own statuses after the limit passed: the remote killed it.
            log.warning("command timed out after %.1fs (killed on the remote)", timeout)
            raise RemoteTimeout(command, timeout)
        return CommandResult(command, code, out.text(), err.text(), duration)

    # -------------------------------------------------------------- transfers
    def get(self, remote_path: str, local_path: Path) -> None:
        """SFTP to a temp file next to ``local_path``, then rename (never a partial file).

        A transfer is idempotent: when its SFTP channel or the connection dies, it is tried
        again with backoff (on a new channel, reconnecting if needed) and resumes from the
        bytes already received. The caller verifies the result (RemoteSite.download).
        """
        path = sftp_path(remote_path)
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        part = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex[:8]}.part")
        began = time.monotonic()

        def attempt() -> None:
            conn, gen = self._current()
            self._sftp_get(conn, gen, path, part)

        def may_retry(exc: RemoteError) -> bool:
            return isinstance(exc, RemoteConnectionError | DownloadError) and not exc.permanent

        try:
            with self._slots:
                self._retrying(f"SFTP download of {path}", attempt, may_retry)
            os.replace(part, local_path)
        finally:
            part.unlink(missing_ok=True)
        with self._stats_lock:
            self.stats.downloads += 1
        instrument.emit("download", time.monotonic() - began, path)

    def _sftp_get(self, conn: Connection, gen: int, path: str, part: Path) -> None:
        """One SFTP session (a new one per attempt: a dead channel is never reused)."""
        try:
            assert conn.transport is not None
            sftp = SFTPClient.from_transport(conn.transport)
        except _NET_ERRORS as exc:
            self._forget_if_dead(conn, gen)
            raise DownloadError(
                f"SFTP unavailable on {self._label(self.settings.login)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if sftp is None:
            raise DownloadError("SFTP subsystem could not be started")
        try:
            self._fetch(sftp, path, part)
        except DownloadError:
            self._forget_if_dead(conn, gen)
            raise
        finally:
            sftp.close()

    def _forget_if_dead(self, conn: Connection, gen: int) -> None:
        if not self._alive(conn):
            self._drop(gen)

    def _fetch(self, sftp: SFTPClient, path: str, part: Path) -> None:
        """Append the rest of ``path`` to ``part`` (resuming after the bytes it holds)."""
        offset = part.stat().st_size if part.exists() else 0
        try:
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(max(self.settings.connect_timeout, 30.0))
            with sftp.open(path, "rb") as remote, open(part, "ab") as out:
                size = remote.stat().st_size or 0
                if offset > size:  # the remote file shrank: start again
                    out.truncate(0)
                    offset = 0
                if offset:
                    log.info("SFTP download of %s resumes at byte %d of %d", path, offset, size)
                # Pipelined reads, one window at a time: what a window brought is on disk
                # before the next starts, so a dying channel costs at most one window.
                while offset < size:
                    end = min(size, offset + _WINDOW)
                    remote.seek(offset)
                    remote.prefetch(end)
                    while offset < end and (chunk := remote.read(min(_CHUNK, end - offset))):
                        out.write(chunk)
                        offset += len(chunk)
                    out.flush()
                    if offset < end:  # the file shrank under us: the caller's check fails
                        break
        except (FileNotFoundError, PermissionError) as exc:
            err = DownloadError(f"SFTP download of {path} failed: {type(exc).__name__}: {exc}")
            err.permanent = True
            raise err from None
        except _NET_ERRORS as exc:
            raise DownloadError(
                f"SFTP download of {path} failed: {type(exc).__name__}: {exc}"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                _close_quietly(self._conn)
                self._conn = None


def _root_cause(exc: BaseException) -> BaseException:
    """paramiko wraps a refused connect in NoValidConnectionsError; show the socket error."""
    if isinstance(exc, NoValidConnectionsError) and exc.errors:
        return next(iter(exc.errors.values()))
    return exc


def _may_have_run(exc: RemoteConnectionError) -> RemoteConnectionError:
    exc.may_have_run = True
    return exc


def _read_available(chan: Channel, out: CappedBuffer, err: CappedBuffer) -> None:
    while chan.recv_ready():
        data = chan.recv(65536)
        if not data:
            break
        out.add(data)
    while chan.recv_stderr_ready():
        data = chan.recv_stderr(65536)
        if not data:
            break
        err.add(data)


def _close_quietly(conn: Connection) -> None:
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
