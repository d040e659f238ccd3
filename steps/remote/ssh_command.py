"""One command on an SSH session channel: the line sent to sshd, and reading its answer.

Kept apart from the connection's lifecycle (ssh_link.py) because this is where the two
guarantees of spec steps-0-2 §2 live: the time limit is enforced on the remote too, and
stdout/stderr are drained while waiting so a large output or a lingering background child
cannot stall the call.
"""

from __future__ import annotations

import base64
import logging
import select
import time
from collections.abc import Callable

from paramiko import Channel

from steps.remote import validate
from steps.remote.errors import RemoteConnectionError, RemoteTimeout
from steps.remote.output import CappedBuffer
from steps.remote.transport import CommandResult

log = logging.getLogger("topup.remote")


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


def may_have_run(exc: RemoteConnectionError) -> RemoteConnectionError:
    """Mark a connection loss after the command was sent: only idempotent ones are retried."""
    exc.may_have_run = True
    return exc


def collect(
    chan: Channel,
    command: str,
    timeout: float,
    start: float,
    *,
    grace: float,
    drain_grace: float,
    connected: Callable[[], bool],
) -> CommandResult | None:
    """Drain output until exit status (+ short drain); None if the connection died.

    ``grace``: wait at most ``timeout + grace`` for the exit status; ``drain_grace``: after
    it, keep reading this long for late output; ``connected``: whether the connection lives.
    """
    out, err = CappedBuffer(), CappedBuffer()
    deadline = start + timeout + grace
    while not chan.exit_status_ready():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("command timed out after %.1fs (killed on the remote)", timeout)
            raise RemoteTimeout(command, timeout)
        select.select([chan], [], [], min(remaining, 0.5))
        _read_available(chan, out, err)
    # Exit status (or closure) seen: output sent just before it may still be in flight;
    # children that keep stdout open must not hold us longer than drain_grace.
    drain_until = time.monotonic() + drain_grace
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
    if code == -1 and not connected():
        return None
    if code in (124, 137) and duration >= timeout - 0.05:
        # GNU timeout's own statuses after the limit passed: the remote killed it.
        log.warning("command timed out after %.1fs (killed on the remote)", timeout)
        raise RemoteTimeout(command, timeout)
    return CommandResult(command, code, out.text(), err.text(), duration)


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
