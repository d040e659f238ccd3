"""A short-lived copy of the flow runs and task runs the facade last read from Prefect.

Why: every progress or list request derives the legacy view from Prefect (one request for the
flow runs, one for their task runs). Under load many clients ask about the same few running
tasks many times a second; reading Prefect for each of them caps the facade at what the
Prefect server answers (bench/, figure 4). Prefect stays the only state machine: this cache
never derives or stores a state of its own, it only reuses an answer for ``ttl`` seconds (1 s
by default, ``TOPUP_FACADE_PREFECT_READ_TTL_SECONDS``; 0 turns it off), and the gateway drops
a run's entries as soon as the facade itself changes that run (pause, resume, cancel, retry).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from prefect.client.schemas.objects import FlowRun, TaskRun

V = TypeVar("V")
MAX_ENTRIES = 20_000


class _Ttl(Generic[V]):
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self._data: dict[str, tuple[float, V]] = {}

    def split(self, keys: Iterable[str]) -> tuple[dict[str, V], list[str]]:
        """(fresh entries, keys to read again)."""
        now = self.clock()
        found: dict[str, V] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            hit = self._data.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                found[key] = hit[1]
            else:
                missing.append(key)
        return found, missing

    def put(self, key: str, value: V) -> None:
        if len(self._data) >= MAX_ENTRIES:
            self._expire()
        self._data[key] = (self.clock(), value)

    def forget(self, key: str) -> None:
        self._data.pop(key, None)

    def _expire(self) -> None:
        now = self.clock()
        self._data = {k: v for k, v in self._data.items() if now - v[0] < self.ttl}
        if len(self._data) >= MAX_ENTRIES:
            self._data.clear()


class PrefectReadCache:
    """Flow runs and their task runs by flow-run id, each kept ``ttl`` seconds."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.runs: _Ttl[FlowRun] = _Ttl(ttl, clock)
        self.task_runs: _Ttl[list[TaskRun]] = _Ttl(ttl, clock)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def keep_task_runs(self, flow_run_ids: Sequence[str], task_runs: Sequence[TaskRun]) -> None:
        """Remember the task runs of exactly these flow runs (an empty list is an answer too)."""
        by_flow: dict[str, list[TaskRun]] = {i: [] for i in flow_run_ids}
        for tr in task_runs:
            by_flow.setdefault(str(tr.flow_run_id), []).append(tr)
        for key, runs in by_flow.items():
            self.task_runs.put(key, runs)

    def forget(self, flow_run_id: str) -> None:
        self.runs.forget(flow_run_id)
        self.task_runs.forget(flow_run_id)
