"""LocalTransport: the Transport interface on local bash processes.

For the demo without sshd and for fast tests. It keeps the SSH transport's guarantees:
output is drained while waiting, a command never outlives its timeout (its whole process
group is killed), and background children holding stdout do not block the call.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

from steps.remote import instrument
from steps.remote.errors import DownloadError, RemoteTimeout
from steps.remote.history import record_command
from steps.remote.output import CappedBuffer
from steps.remote.transport import CommandResult, TransportStats

log = logging.getLogger("topup.remote")


class LocalTransport:
    """Runs commands with ``bash -c`` on this machine, each in its own process group."""

    def __init__(self, kill_grace: float = 2.0, drain_grace: float = 1.0) -> None:
        self.stats = TransportStats()
        self.kill_grace = kill_grace
        # After the shell exited, how long to keep reading from children that still
        # hold stdout/stderr open (legacy pitfall: the read blocked until they ended).
        self.drain_grace = drain_grace
        self._lock = threading.Lock()

    def run(self, command: str, timeout: float, *, idempotent: bool = False) -> CommandResult:
        record_command(self.stats, command, self._lock)
        start = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        out, err = CappedBuffer(), CappedBuffer()
        try:
            finished = self._collect(proc, out, err, start + timeout)
        except BaseException:
            self._kill_group(proc)
            raise
        finally:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        duration = time.monotonic() - start
        with self._lock:
            self.stats.command_seconds += duration
        instrument.emit("command", duration, command)
        if not finished:
            self._kill_group(proc)
            log.warning("local command timed out after %.1fs", timeout)
            raise RemoteTimeout(command, timeout)
        assert proc.returncode is not None
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return CommandResult(command, code, out.text(), err.text(), duration)

    def _collect(
        self, proc: subprocess.Popen[bytes], out: CappedBuffer, err: CappedBuffer, deadline: float
    ) -> bool:
        """Read both pipes until the shell exits (plus a short drain); False on deadline."""
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        drain_until: float | None = None
        try:
            while sel.get_map():
                now = time.monotonic()
                if drain_until is None and proc.poll() is not None:
                    drain_until = now + self.drain_grace
                if drain_until is not None and now >= drain_until:
                    break
                if drain_until is None and now >= deadline:
                    return False
                limit = (drain_until if drain_until is not None else deadline) - now
                for key, _ in sel.select(timeout=min(0.2, max(limit, 0.0))):
                    data = os.read(key.fd, 65536)
                    if data:
                        key.data.add(data)
                    else:
                        sel.unregister(key.fileobj)
            remaining = deadline - time.monotonic()
            if proc.poll() is None:
                try:
                    proc.wait(timeout=max(remaining, 0.0))
                except subprocess.TimeoutExpired:
                    return False
            return True
        finally:
            sel.close()

    def _kill_group(self, proc: subprocess.Popen[bytes]) -> None:
        """TERM the command's process group, then KILL what is left after a grace period."""
        if not self._signal_group(proc, signal.SIGTERM):
            self._signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=self.kill_grace)
        except subprocess.TimeoutExpired:
            log.error("local command pid %d survived SIGKILL", proc.pid)

    def _signal_group(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> bool:
        """Send ``sig`` to the group; True once the shell and all its group members are gone."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            proc.poll()
            return True
        deadline = time.monotonic() + self.kill_grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_alive(proc.pid):
                return True
            time.sleep(0.02)
        return False

    def get(self, remote_path: str, local_path: Path) -> None:
        """Copy to a temp file next to ``local_path``, then rename (never a partial file)."""
        source = Path(os.path.expanduser(remote_path))
        local_path = Path(local_path)
        tmp = local_path.with_name(f".{local_path.name}.{uuid.uuid4().hex[:8]}.part")
        began = time.monotonic()
        try:
            local_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp)
            os.replace(tmp, local_path)
        except OSError as exc:
            raise DownloadError(f"copy of {remote_path} failed: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self.stats.downloads += 1
        instrument.emit("download", time.monotonic() - began, remote_path)

    def close(self) -> None:
        """Nothing to release: every command is its own process."""


def group_alive(pgid: int) -> bool:
    """True while a non-zombie process belongs to process group ``pgid``.

    Zombies do not count: an init that reaps orphans slowly must not make a killed group
    look alive. Reads /proc (Linux); elsewhere falls back to ``killpg(pgid, 0)``.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
