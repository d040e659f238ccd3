"""The processes and ports of an sshd pair, seen through /proc and sockets.

Why apart from ``sim/sshd.py``: these are plain process mechanics (find, wait for, kill in
order, probe a port) with no knowledge of the pair's config or faults.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


class SshdError(RuntimeError):
    """An sshd of the pair could not be started or controlled."""


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll ``condition`` until it holds; raise SshdError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SshdError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A port the kernel just considered free on loopback (may race; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def ssh_banner(port: int, timeout: float = 1.0) -> str | None:
    """The identification string a server on ``port`` sends, or None if none answers."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    return line if line.startswith("SSH-") else None


def ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces/parentheses: fields start after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[1]), rest[0]


def alive(pid: int) -> bool:
    info = ppid_and_state(pid)
    return info is not None and info[1] not in ("Z", "X")


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def exe_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def has_open(pid: int, target: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def kill_pids(pids: list[int]) -> None:
    """SIGKILL the processes, children before parents.

    A parent then reaps its killed child; killing both at once would orphan the child
    to PID 1, which here does not reap, leaving zombies behind.
    """
    remaining = set(pids)
    while remaining:
        parents = {info[0] for p in remaining if (info := ppid_and_state(p)) is not None}
        leaves = [p for p in remaining if p not in parents] or list(remaining)
        for pid in leaves:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda ls=leaves: not any(alive(p) for p in ls), 10.0, f"sshd {leaves} to die")
        remaining = {p for p in remaining - set(leaves) if alive(p)}
