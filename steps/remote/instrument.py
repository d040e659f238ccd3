"""An optional observer of remote activity, for the benchmarks (``bench/``).

Why a hook and not the counters alone: ``TransportStats`` counts per transport, but the
benchmarks need *when* each command, session and download happened, to subtract remote time
from a flow's wall time step by step. Off by default: the transports call ``emit`` and, with
no observer installed, it returns after one ``None`` check. It carries no secrets (only the
first line of a command, which never holds a password) and knows nothing of Prefect or HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["command", "session", "download"]
LABEL_CHARS = 120


@dataclass(frozen=True)
class RemoteEvent:
    """One finished remote action; ``start``/``end`` are wall-clock seconds (``time.time``)."""

    kind: EventKind
    start: float
    end: float
    label: str
    ok: bool = True

    @property
    def seconds(self) -> float:
        return self.end - self.start


Observer = Callable[[RemoteEvent], None]

_observer: Observer | None = None


def set_observer(observer: Observer | None) -> Observer | None:
    """Install ``observer`` (None switches the hook off); returns the previous one."""
    global _observer
    previous, _observer = _observer, observer
    return previous


def emit(kind: EventKind, duration: float, label: str, ok: bool = True) -> None:
    """Report an action that just ended after ``duration`` seconds (no-op without observer)."""
    observer = _observer
    if observer is None:
        return
    end = time.time()
    first = label.split("\n", 2)
    # Our own scripts start with "# topup: <what>": that comment is the telling part.
    text = first[0] if not first[0].startswith("# topup:") else first[0][2:]
    observer(RemoteEvent(kind, end - duration, end, text[:LABEL_CHARS], ok))
