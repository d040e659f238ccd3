"""A copy of the flow runs and task runs the facade last read from Prefect, kept fresh by
Prefect's own event stream.

Why: every progress or list request derives the legacy view from Prefect (one request for the
flow runs, one for their task runs). Under load many clients ask about the same tasks many
times a second; reading Prefect for each of them caps the facade at what the Prefect server
answers (bench/, figure 4). Prefect stays the only state machine: this cache never derives or
stores a state of its own, it only reuses Prefect's answer until Prefect says the run changed.

Freshness rules (``facade.cache_feed`` delivers the events):
- while the event stream is live, an entry is reused for ``live_ttl`` seconds (a safety net);
  any event of a flow run or of one of its task runs drops that run's entries at once;
- an entry whose read *started* before the run's last event is never served (the read may
  have raced the change);
- Prefect publishes an event before its transaction commits (and task-run states are written
  by a consumer of the events), so a read shortly after an event may still see the old state:
  entries read within ``settle`` seconds of the run's last event only live ``ttl`` seconds;
- without a live stream every entry lives ``ttl`` seconds (1 s by default); ``ttl`` 0 turns
  the cache off. A change the facade itself makes counts as an event of that run (a read
  in flight since before it, e.g. for a live watcher, must not answer the request after it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from prefect.client.schemas.objects import FlowRun, TaskRun

V = TypeVar("V")
MAX_ENTRIES = 20_000


class _Ttl(Generic[V]):
    def __init__(self, owner: PrefectReadCache) -> None:
        self.owner = owner
        self._data: dict[str, tuple[float, V]] = {}

    def split(self, keys: Iterable[str]) -> tuple[dict[str, V], list[str]]:
        """(fresh entries, keys to read again)."""
        now = self.owner.clock()
        found: dict[str, V] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            hit = self._data.get(key)
            if hit is not None and now - hit[0] < self.owner.ttl_of(key, hit[0]):
                found[key] = hit[1]
            else:
                missing.append(key)
        return found, missing

    def put(self, key: str, value: V, read_started: float | None = None) -> None:
        """Keep ``value``, read from Prefect at ``read_started`` (default: now)."""
        if len(self._data) >= MAX_ENTRIES:
            self._expire()
        self._data[key] = (self.owner.clock() if read_started is None else read_started, value)

    def forget(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def _expire(self) -> None:
        now = self.owner.clock()
        self._data = {
            k: v for k, v in self._data.items() if now - v[0] < self.owner.ttl_of(k, v[0])
        }
        if len(self._data) >= MAX_ENTRIES:
            self._data.clear()


class PrefectReadCache:
    """Flow runs and their task runs by flow-run id (see the module docstring for freshness)."""

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        live_ttl: float = 30.0,
        settle: float = 5.0,
    ) -> None:
        self.ttl = ttl
        self.live_ttl = max(live_ttl, ttl)
        self.settle = settle
        self.clock = clock
        # True while facade.cache_feed receives Prefect's events for every flow/task run.
        self.live = False
        self._last_event: dict[str, float] = {}
        self.runs: _Ttl[FlowRun] = _Ttl(self)
        self.task_runs: _Ttl[list[TaskRun]] = _Ttl(self)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def ttl_of(self, key: str, read_started: float) -> float:
        """How long an entry of ``key`` read at ``read_started`` may be served (0: never)."""
        event = self._last_event.get(key)
        if event is not None and read_started <= event:
            return 0.0
        if not self.live or (event is not None and read_started - event < self.settle):
            return self.ttl
        return self.live_ttl

    def keep_task_runs(
        self,
        flow_run_ids: Sequence[str],
        task_runs: Sequence[TaskRun],
        read_started: float | None = None,
    ) -> None:
        """Remember the task runs of exactly these flow runs (an empty list is an answer too)."""
        by_flow: dict[str, list[TaskRun]] = {i: [] for i in flow_run_ids}
        for tr in task_runs:
            by_flow.setdefault(str(tr.flow_run_id), []).append(tr)
        for key, runs in by_flow.items():
            self.task_runs.put(key, runs, read_started)

    def forget(self, flow_run_id: str) -> None:
        self.runs.forget(flow_run_id)
        self.task_runs.forget(flow_run_id)

    def changed(self, flow_run_id: str) -> None:
        """This flow run or one of its task runs changed (Prefect reported it, or the facade
        changed it): entries read before now are never served, also those still in flight."""
        if len(self._last_event) >= MAX_ENTRIES:
            now = self.clock()
            horizon = self.live_ttl + self.settle
            self._last_event = {k: t for k, t in self._last_event.items() if now - t < horizon}
        self._last_event[flow_run_id] = self.clock()
        self.forget(flow_run_id)

    def set_live(self, live: bool) -> None:
        """The event stream (re)connected or dropped: what was read before may be stale."""
        self.live = live
        self.runs.clear()
        self.task_runs.clear()
