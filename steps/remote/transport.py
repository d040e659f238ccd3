"""The interface every transport (SSH, local shell) provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class TransportStats:
    """Counters the benchmarks and tests read."""

    commands: int = 0
    sessions: int = 0  # SSH connections opened to the login node (reconnects included)
    command_seconds: float = 0.0
    downloads: int = 0
    # Transient faults absorbed by the transport: re-attempts, and seconds from the first
    # failure of a call to the start of its last attempt (backoff waits included).
    retries: int = 0
    retry_seconds: float = 0.0
    history: list[str] = field(default_factory=list)


class Transport(Protocol):
    stats: TransportStats

    def run(self, command: str, timeout: float, *, idempotent: bool = False) -> CommandResult:
        """Run ``command`` in a non-interactive bash; raise RemoteTimeout when it overruns.

        ``idempotent``: running the command twice is safe (read-only, or it re-attaches), so
        a transport may run it again when a connection died under it.
        """
        ...

    def get(self, remote_path: str, local_path: Path) -> None:
        """Copy one remote file to ``local_path`` (complete, or nothing there)."""
        ...

    def close(self) -> None: ...
