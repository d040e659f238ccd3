"""Network faults of the simulated hosts: SFTP cut tokens, refused connects, short outages.

The sshd pair (sim/sshd.py) applies them; this module holds the mechanics so that the pair
keeps one job (running the servers). Stdlib only, like the pair.

- SFTP cut: one token file per session to cut, holding a byte count. The login node's SFTP
  wrapper claims a token with an atomic rename, so each token cuts exactly one session,
  whoever runs first.
- Refuser: holds a stopped server's port and resets the next ``count`` connections before
  any banner, then hands the port back (a callback restarts sshd).
- Outage: nothing listens for ``seconds`` (connects get ECONNREFUSED), then the callback.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

_POLL = 0.1


def write_tokens(directory: Path, after_bytes: int, count: int, user: str) -> None:
    """Replace the pending tokens of ``directory`` by ``count`` tokens of ``after_bytes``."""
    for old in directory.glob("t*"):
        old.unlink(missing_ok=True)
    entry = pwd.getpwnam(user)
    for i in range(count):
        token = directory / f"t{i:05d}"
        token.write_text(f"{int(after_bytes)}\n")
        os.chmod(token, 0o644)
        os.chown(token, entry.pw_uid, entry.pw_gid)


def tokens_left(directory: Path) -> int:
    return sum(1 for p in directory.glob("t*") if "." not in p.name)


class HostFault(threading.Thread):
    """A fault that ends by itself (then ``restore`` runs) or by ``cancel`` (no restore)."""

    def __init__(self, restore: Callable[[], None]) -> None:
        super().__init__(daemon=True, name=f"sim-{type(self).__name__.lower()}")
        self._restore = restore
        self._cancelled = threading.Event()
        self.error: BaseException | None = None

    def cancel(self) -> None:
        self._cancelled.set()
        if self.is_alive():
            self.join(timeout=30)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the host is back; True if it is (False on timeout or cancel)."""
        self.join(timeout)
        return not self.is_alive() and not self._cancelled.is_set() and self.error is None

    def run(self) -> None:
        try:
            if self._hold():
                self._restore()
        except BaseException as exc:  # noqa: BLE001 - reported through .error / wait()
            self.error = exc

    def _hold(self) -> bool:
        """Keep the fault on; True when it ended by itself."""
        raise NotImplementedError


class Outage(HostFault):
    """Nothing listens for ``seconds``."""

    def __init__(self, seconds: float, restore: Callable[[], None]) -> None:
        super().__init__(restore)
        self.seconds = seconds

    def _hold(self) -> bool:
        return not self._cancelled.wait(self.seconds)


class Refuser(HostFault):
    """Resets the next ``count`` connections to ``host:port`` before any banner."""

    def __init__(self, host: str, port: int, count: int, restore: Callable[[], None]) -> None:
        super().__init__(restore)
        self.count = count
        self.refused = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)
        self._sock.settimeout(_POLL)

    def _hold(self) -> bool:
        try:
            while self.refused < self.count:
                if self._cancelled.is_set():
                    return False
                try:
                    conn, _ = self._sock.accept()
                except TimeoutError:
                    continue
                # Linger 0: close() sends a reset, as a host refusing service would.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                self.refused += 1
            return True
        finally:
            self._sock.close()
