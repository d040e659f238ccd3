"""What a benchmark watches while a flow runs: remote actions (through the remote layer's
``instrument`` hook) and the sleeps of the steps' polling loops.

Why sleeps too: with zero-latency jobs a step still waits between two polls while the batch
system starts the job processes; that time belongs to the site, not to the orchestration, so
it is subtracted along with the remote commands.
"""

from __future__ import annotations

import importlib
import threading
import time
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from steps.remote import instrument
from steps.remote.instrument import RemoteEvent

# Modules whose ``time.sleep`` is a wait for the site (polling loops).
WAITING_MODULES = ("steps.batch_jobs", "steps.output_waits", "steps.remote.site")

Interval = tuple[float, float]


@dataclass
class Recorder:
    """Collects remote events and poll sleeps (wall-clock intervals)."""

    events: list[RemoteEvent] = field(default_factory=list)
    sleeps: list[Interval] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: RemoteEvent) -> None:
        with self._lock:
            self.events.append(event)

    def on_sleep(self, start: float, end: float) -> None:
        with self._lock:
            self.sleeps.append((start, end))

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.sleeps.clear()

    def of(self, kind: str) -> list[RemoteEvent]:
        return [e for e in self.events if e.kind == kind]

    def remote_intervals(self) -> list[Interval]:
        return [(e.start, e.end) for e in self.events]


class _TimeWithWatchedSleep(types.ModuleType):
    """The ``time`` module as one module sees it, with ``sleep`` reported to a Recorder."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__("time")
        self._recorder = recorder

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        start = time.time()
        time.sleep(seconds)
        self._recorder.on_sleep(start, time.time())


@contextmanager
def watching(recorder: Recorder) -> Iterator[Recorder]:
    """Install the remote-layer observer and the sleep watch; undo both afterwards."""
    previous = instrument.set_observer(recorder.on_event)
    patched: list[types.ModuleType] = []
    for name in WAITING_MODULES:
        module = importlib.import_module(name)
        module.time = _TimeWithWatchedSleep(recorder)  # type: ignore[attr-defined]
        patched.append(module)
    try:
        yield recorder
    finally:
        instrument.set_observer(previous)
        for module in patched:
            module.time = time  # type: ignore[attr-defined]


def union_seconds(intervals: Iterable[Interval], within: Interval | None = None) -> float:
    """Total length covered by ``intervals`` (overlaps counted once), clipped to ``within``."""
    spans = sorted(intervals)
    if within is not None:
        lo, hi = within
        spans = [(max(a, lo), min(b, hi)) for a, b in spans if b > lo and a < hi]
    total = 0.0
    cur_start: float | None = None
    cur_end = 0.0
    for a, b in spans:
        if cur_start is None or a > cur_end:
            if cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_start is not None:
        total += cur_end - cur_start
    return total
