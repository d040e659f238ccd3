"""Counting commands in TransportStats, shared by both transports.

Benchmarks and tests read ``stats.commands`` (e.g. "one command per poll cycle"); the
history keeps the last commands for diagnostics, bounded so a long flow does not grow it
without limit. Commands never contain secrets (passwords only go to paramiko).
"""

from __future__ import annotations

import threading

from steps.remote.transport import TransportStats

HISTORY_LIMIT = 1000
HISTORY_CHARS = 300


def record_command(stats: TransportStats, command: str, lock: threading.Lock) -> None:
    """Count one command and remember its beginning."""
    with lock:
        stats.commands += 1
        stats.history.append(command[:HISTORY_CHARS])
        if len(stats.history) > HISTORY_LIMIT:
            del stats.history[: len(stats.history) - HISTORY_LIMIT]
