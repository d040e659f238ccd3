"""Child processes that can be stopped completely: the server, workers and what they spawn.

Why: a Prefect process worker starts every flow run (and every cancellation-hook runner) in a
new session, so killing the worker's process group alone leaves flow runs behind. A
``ManagedProcess`` starts its command in its own process group, finds its descendants through
/proc (before signalling, while the parent links still exist) and signals all their groups.
Linux only (reads /proc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

PidKey = tuple[int, int]  # (pid, start time in clock ticks): survives pid reuse checks


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is index 0)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _key(pid: int) -> PidKey | None:
    """(pid, start time) of a live, non-zombie process; None when it is gone."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return pid, int(fields[19])


def alive(key: PidKey) -> bool:
    """The very process of ``key`` still runs (not a zombie, not a reused pid)."""
    return _key(key[0]) == key


def descendants(root: int) -> list[PidKey]:
    """Every live process below ``root`` (children first-level first), from one /proc scan."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[PidKey] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        key = _key(pid)
        if key is not None:
            out.append(key)
        todo.extend(children.get(pid, []))
    return out


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def signal_tree(keys: Sequence[PidKey], sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of each still-alive process, then to the process."""
    groups: set[int] = set()
    for key in keys:
        if not alive(key):
            continue
        pgid = _pgid(key[0])
        if pgid is not None and pgid > 1 and pgid not in groups:
            groups.add(pgid)
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.kill(key[0], sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(keys: Sequence[PidKey], timeout: float, reap: Callable[[], None]) -> bool:
    """Poll until none of ``keys`` is alive; False when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        reap()
        if not any(alive(k) for k in keys):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@dataclass
class ManagedProcess:
    """One command started in its own process group, output appended to ``log_path``."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # closed in _close()
        self._log.write(f"=== start {self.name}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(self.env),
            cwd=str(self.cwd),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[PidKey]:
        """This process and all its live descendants (including other sessions)."""
        if self.proc is None:
            return []
        own = _key(self.proc.pid)
        return ([own] if own else []) + descendants(self.proc.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _reap(self) -> None:
        if self.proc is not None:
            self.proc.poll()

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the whole tree, SIGKILL what is left after ``timeout``; True if all ended."""
        keys = self.tree()
        signal_tree(keys, signal.SIGTERM)
        clean = wait_gone(keys, timeout, self._reap)
        if not clean:
            # Processes spawned while terminating are caught by a fresh scan.
            keys = list(dict.fromkeys(keys + self.tree()))
            signal_tree(keys, signal.SIGKILL)
            clean = wait_gone(keys, 5.0, self._reap)
        self._close()
        return clean

    def wake(self) -> None:
        """SIGCONT a stopped tree, so that it can act on the SIGTERM of ``stop()``."""
        signal_tree(self.tree(), signal.SIGCONT)

    def kill(self) -> bool:
        """SIGKILL the whole tree at once (a crashed machine, not a shutdown)."""
        keys = self.tree()
        signal_tree(keys, signal.SIGKILL)
        clean = wait_gone(keys, 5.0, self._reap)
        self._close()
        return clean

    def _close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
