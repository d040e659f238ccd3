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

This module holds the retry policy of each operation; the pieces it combines live in
ssh_link.py (opening and reopening the connection), ssh_command.py (the command line and
reading its output) and sftp.py (the resumable download).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fabric import Connection
from paramiko import Channel, SFTPClient

from steps.config import SiteSettings
from steps.remote import instrument
from steps.remote.errors import (
    DownloadError,
    RemoteConnectionError,
    RemoteError,
    RemoteTimeout,
)
from steps.remote.history import record_command
from steps.remote.retry import Recovery, with_backoff
from steps.remote.sftp import fetch, sftp_path
from steps.remote.ssh_command import collect, may_have_run, remote_command
from steps.remote.ssh_link import NET_ERRORS, SshLink, alive, label
from steps.remote.transport import CommandResult, TransportStats

__all__ = ["SshTransport", "remote_command", "sftp_path"]

log = logging.getLogger("topup.remote")
_T = TypeVar("_T")


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
        self._stats_lock = threading.Lock()
        self._link = SshLink(settings, self.stats, self._stats_lock)
        # sshd refuses more than MaxSessions (default 10) channels per connection: extra
        # callers (Prefect threads) wait for a free slot instead of failing.
        self._slots = threading.BoundedSemaphore(max_channels)

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
            conn, gen = self._link.current()
            chan = self._open_channel(conn, gen)
            return self._execute(conn, gen, chan, command, wire, timeout)

        def may_retry(exc: RemoteError) -> bool:
            if not isinstance(exc, RemoteConnectionError) or exc.permanent:
                return False
            return idempotent or not exc.may_have_run

        with self._slots:
            return self._retrying(
                f"SSH command to {label(self.settings.login)}", attempt, may_retry
            )

    def _open_channel(self, conn: Connection, gen: int) -> Channel:
        """A new session channel. If that fails the command cannot have started; the
        connection is dropped only if it is really dead (a refused channel on a live
        connection must not break the commands running on it)."""
        try:
            assert conn.transport is not None
            return conn.transport.open_session(timeout=self.settings.connect_timeout)
        except NET_ERRORS as exc:
            where = label(self.settings.login)
            if alive(conn):
                raise RemoteConnectionError(
                    f"{where} refused a new session: {type(exc).__name__}: {exc}"
                ) from None
            self._link.drop(gen)
            raise RemoteConnectionError(
                f"cannot open a session on {where}: {type(exc).__name__}: {exc}"
            ) from None

    def _execute(
        self, conn: Connection, gen: int, chan: Channel, command: str, wire: str, timeout: float
    ) -> CommandResult:
        record_command(self.stats, command, self._stats_lock)
        start = time.monotonic()
        try:
            chan.exec_command(wire)
            chan.shutdown_write()  # the command reads EOF from stdin, never waits on it
            result = collect(
                chan,
                command,
                timeout,
                start,
                grace=self.grace,
                drain_grace=self.drain_grace,
                connected=lambda: alive(conn),
            )
        except (RemoteTimeout, RemoteConnectionError):
            raise
        except NET_ERRORS as exc:
            self._link.drop(gen)
            raise may_have_run(
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
            self._link.drop(gen)
            raise may_have_run(
                RemoteConnectionError(
                    "connection lost while running a command (it may still run on the remote)"
                )
            )
        return result

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
            conn, gen = self._link.current()
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
        except NET_ERRORS as exc:
            self._link.forget_if_dead(conn, gen)
            raise DownloadError(
                f"SFTP unavailable on {label(self.settings.login)}: {type(exc).__name__}: {exc}"
            ) from None
        if sftp is None:
            raise DownloadError("SFTP subsystem could not be started")
        try:
            fetch(sftp, path, part, max(self.settings.connect_timeout, 30.0))
        except DownloadError:
            self._link.forget_if_dead(conn, gen)
            raise
        finally:
            sftp.close()

    def close(self) -> None:
        self._link.close()
