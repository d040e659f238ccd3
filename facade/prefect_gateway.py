"""Every call the facade makes to the Prefect API, in one place.

Why one gateway: the routes speak in legacy terms (tasks, executions, logs); only this module
knows Prefect's client, filters and state objects, and it talks to the one Prefect API URL of
the facade's settings (never to whatever PREFECT_API_URL the process happens to carry).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterStartTime,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
    TaskRunFilter,
    TaskRunFilterStartTime,
)
from prefect.client.schemas.objects import FlowRun, Log, TaskRun
from prefect.client.schemas.responses import DeploymentResponse, SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort
from prefect.events.clients import PrefectEventSubscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import aresume_flow_run, asuspend_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling, Scheduled

from facade.read_cache import PrefectReadCache


class GatewayError(Exception):
    """Prefect refused or could not do what was asked; the text is safe to show."""


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T")


def _changes_run(method: F) -> F:
    """The method changes the flow run it is given: afterwards, no read of that run started
    before the change is served, neither a cached one nor one still in flight (also when the
    change failed: it may have happened anyway)."""

    @functools.wraps(method)
    async def wrapper(self: PrefectGateway, flow_run_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, flow_run_id, *args, **kwargs)
        finally:
            self.cache.changed(str(UUID(flow_run_id)))

    return wrapper  # type: ignore[return-value]


class PrefectGateway:
    """Async access to one Prefect API; open once per app (lifespan) and share."""

    def __init__(
        self,
        api_url: str,
        page_size: int = 200,
        read_ttl: float = 0.0,
        live_read_ttl: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.page_size = page_size
        # Copies of flow/task-run reads (facade.read_cache), kept fresh by facade.cache_feed;
        # read_ttl 0 = always read.
        self.cache = PrefectReadCache(read_ttl, live_ttl=live_read_ttl)
        # Cache reads in flight, by (kind, flow-run id): a request that needs the same run
        # waits for that read instead of asking Prefect again (a burst after an event).
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._client: PrefectClient | None = None
        self._deployments: dict[str, DeploymentResponse] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is None:
            client = PrefectClient(self.api_url)
            await client.__aenter__()
            self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.__aexit__(None, None, None)

    @property
    def client(self) -> PrefectClient:
        if self._client is None:
            raise GatewayError("Prefect gateway is not open")
        return self._client

    @contextlib.contextmanager
    def _settings(self) -> Iterator[None]:
        """Prefect helpers that build their own client read PREFECT_API_URL: point it at ours."""
        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    async def health(self) -> str | None:
        """None when the API answers, else a short reason."""
        try:
            error = await self.client.api_healthcheck()
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            return type(exc).__name__
        return None if error is None else type(error).__name__

    # -- deployments and runs ----------------------------------------------------------------
    async def deployment(self, flow_name: str, names: Sequence[str]) -> DeploymentResponse:
        """The first existing deployment among ``names`` ("flow/deployment"), else any
        deployment of ``flow_name`` (a definition without its own deployment runs on one of
        its flow's, naming itself in the parameters)."""
        for name in names:
            cached = self._deployments.get(name)
            if cached is not None:
                return cached
            try:
                deployment = await self.client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            self._deployments[name] = deployment
            return deployment
        found = await self.client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), limit=1
        )
        if not found:
            raise GatewayError(f"No deployment found (looked for {', '.join(names)})")
        return found[0]

    async def create_run(
        self,
        deployment_id: UUID,
        parameters: dict[str, Any],
        *,
        tags: Sequence[str],
        idempotency_key: str,
        name: str | None = None,
    ) -> FlowRun:
        return await self.client.create_flow_run_from_deployment(
            deployment_id,
            parameters=parameters,
            tags=list(tags),
            idempotency_key=idempotency_key,
            name=name,
        )

    async def read_run(self, flow_run_id: str) -> FlowRun | None:
        try:
            return await self.client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return None

    async def read_runs(self, flow_run_ids: Sequence[str]) -> dict[str, FlowRun]:
        """Several flow runs in one request, keyed by id string (fresh cached ones reused)."""
        found, missing = self.cache.runs.split(str(UUID(i)) for i in flow_run_ids)
        if await self._joined("run", missing):
            more, missing = self.cache.runs.split(missing)
            found.update(more)
        ids = [UUID(i) for i in missing]
        started = self.cache.clock()
        runs: list[FlowRun] = []
        with self._reading("run", missing):
            for chunk in _chunks(ids, self.page_size):
                runs += await self.client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                    limit=len(chunk),
                )
        for r in runs:
            if self.cache.enabled:
                self.cache.runs.put(str(r.id), r, started)
            found[str(r.id)] = r
        return found

    async def task_runs(self, flow_run_ids: Sequence[str]) -> list[TaskRun]:
        """All task runs of these flow runs, oldest first (paged; fresh cached ones reused)."""
        found, missing = self.cache.task_runs.split(str(UUID(i)) for i in flow_run_ids)
        if await self._joined("task_runs", missing):
            more, missing = self.cache.task_runs.split(missing)
            found.update(more)
        out = [tr for runs in found.values() for tr in runs]
        if missing:
            flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(i) for i in missing]))
            started = self.cache.clock()
            with self._reading("task_runs", missing):
                fetched = await self._page_task_runs(flow_run_filter=flt)
            if self.cache.enabled:
                self.cache.keep_task_runs(missing, fetched, started)
            if not found:
                return fetched
            out += fetched
        return sorted(out, key=_expected_start)

    async def _joined(self, kind: str, keys: list[str]) -> bool:
        """Wait for reads of these runs that other requests started; True if there were any
        (the caller then looks in the cache again, and reads what is still missing)."""
        pending = {f for k in keys if (f := self._inflight.get((kind, k))) is not None}
        if pending:
            await asyncio.wait(pending)
        return bool(pending)

    @contextlib.contextmanager
    def _reading(self, kind: str, keys: list[str]) -> Iterator[None]:
        """Announce a read of these runs (only when the cache keeps its answer)."""
        if not keys or not self.cache.enabled:
            yield
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._inflight.setdefault((kind, k), done)
        try:
            yield
        finally:
            for k in keys:
                if self._inflight.get((kind, k)) is done:
                    del self._inflight[(kind, k)]
            done.set_result(None)

    async def _every_page(self, read: Callable[[int], Awaitable[list[T]]]) -> list[T]:
        """All of a listing, read ``page_size`` at a time (``read(offset)``) until a short
        page: Prefect caps each read."""
        out: list[T] = []
        offset = 0
        while True:
            page = await read(offset)
            out += page
            if len(page) < self.page_size:
                return out
            offset += self.page_size

    async def _page_task_runs(self, **filters: Any) -> list[TaskRun]:
        return await self._every_page(
            lambda offset: self.client.read_task_runs(
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=self.page_size,
                offset=offset,
                **filters,
            )
        )

    async def logs(
        self,
        flow_run_ids: Sequence[str],
        *,
        limit: int,
        min_level: int | None = None,
        max_level: int | None = None,
        newest_first: bool = True,
    ) -> list[Log]:
        """Logs of these flow runs (flow and task logs), at most ``limit``, paged."""
        ids = [UUID(i) for i in flow_run_ids]
        if not ids or limit <= 0:
            return []
        level = None
        if min_level is not None or max_level is not None:
            level = LogFilterLevel(ge_=min_level, le_=max_level)
        flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids), level=level)
        sort = LogSort.TIMESTAMP_DESC if newest_first else LogSort.TIMESTAMP_ASC
        out: list[Log] = []
        while len(out) < limit:
            want = min(self.page_size, limit - len(out))
            page = await self.client.read_logs(flt, limit=want, offset=len(out), sort=sort)
            out += page
            if len(page) < want:
                break
        return out

    # -- control -----------------------------------------------------------------------------
    @_changes_run
    async def suspend(self, flow_run_id: str) -> None:
        """Suspend from outside: the running step finishes, the flow exits at the next one."""
        with self._settings():
            try:
                await asuspend_flow_run(flow_run_id=UUID(flow_run_id))
            except RuntimeError as exc:
                raise GatewayError(str(exc)) from exc

    @_changes_run
    async def resume(self, flow_run_id: str, run_input: dict[str, Any] | None = None) -> None:
        with self._settings():
            try:
                await aresume_flow_run(UUID(flow_run_id), run_input=run_input)
            except Exception as exc:  # NotPausedError, FlowPauseTimeout, RuntimeError
                raise GatewayError(str(exc) or type(exc).__name__) from exc

    async def _run_input(self, flow_run_id: UUID, key: str | None) -> Any:
        """A stored run input, JSON-decoded; None when absent (not stored yet) or unreadable."""
        if not key:
            return None
        try:
            return json.loads(await self.client.read_flow_run_input(flow_run_id, key))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise
        except (ObjectNotFound, ValueError):
            return None

    async def pause_form(self, flow_run: FlowRun) -> tuple[dict[str, Any], str] | None:
        """The JSON schema and description of the input a paused run waits for, if any."""
        state = flow_run.state
        keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
        if not keyset:
            return None
        # Prefect stores the form just after the run turns Paused, the schema first and the
        # description second; our flows always give one (flows/operator.ask). Until both
        # are stored there is no form.
        schema = await self._run_input(flow_run.id, keyset.get("schema"))
        if not isinstance(schema, dict):
            return None
        description = await self._run_input(flow_run.id, keyset.get("description"))
        if not isinstance(description, str) or not description:
            return None
        return schema, description

    @_changes_run
    async def cancel(self, flow_run_id: str) -> str:
        """Ask for cancellation; the server goes straight to Cancelled when nothing runs."""
        result = await self.client.set_flow_run_state(UUID(flow_run_id), Cancelling())
        if result.status not in (SetStateStatus.ACCEPT, SetStateStatus.REJECT):
            reason = getattr(result.details, "reason", None) or result.status.value
            raise GatewayError(f"Prefect refused the cancellation: {reason}")
        return result.state.type.value if result.state else "CANCELLING"

    @_changes_run
    async def reschedule(self, flow_run_id: str) -> None:
        """Run the same flow run again; its completed steps come back Cached."""
        result = await self.client.set_flow_run_state(
            UUID(flow_run_id), Scheduled(message="Retried from the facade"), force=True
        )
        if result.status != SetStateStatus.ACCEPT:
            reason = getattr(result.details, "reason", None) or result.status.value
            raise GatewayError(f"Prefect refused the retry: {reason}")

    @_changes_run
    async def update_parameters(self, flow_run_id: str, parameters: dict[str, Any]) -> None:
        await self.client.update_flow_run(UUID(flow_run_id), parameters=parameters)

    async def runs_of_flows(
        self, flow_names: Sequence[str], since: datetime | None, limit: int = 5000
    ) -> list[FlowRun]:
        """Flow runs of these flows expected to start after ``since`` (all when None), newest
        first, at most ``limit`` (paged)."""
        flt = (
            FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since))
            if since is not None
            else None
        )
        flow_filter = FlowFilter(name=FlowFilterName(any_=list(flow_names)))
        out: list[FlowRun] = []
        while len(out) < limit:
            page = await self.client.read_flow_runs(
                flow_filter=flow_filter,
                flow_run_filter=flt,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=min(self.page_size, limit - len(out)),
                offset=len(out),
            )
            out += page
            if len(page) < self.page_size:
                break
        return out

    # -- statistics --------------------------------------------------------------------------
    async def flow_runs_between(
        self,
        since: datetime,
        until: datetime,
        *,
        flow_names: Sequence[str] | None = None,
        flow_run_ids: Sequence[str] | None = None,
    ) -> list[FlowRun]:
        flt = FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since, before_=until),
            id=FlowRunFilterId(any_=[UUID(i) for i in flow_run_ids])
            if flow_run_ids is not None
            else None,
        )
        flow_filter = FlowFilter(name=FlowFilterName(any_=list(flow_names))) if flow_names else None
        return await self._every_page(
            lambda offset: self.client.read_flow_runs(
                flow_filter=flow_filter,
                flow_run_filter=flt,
                sort=FlowRunSort.START_TIME_ASC,
                limit=self.page_size,
                offset=offset,
            )
        )

    async def task_runs_between(
        self, since: datetime, until: datetime, flow_run_ids: Sequence[str]
    ) -> list[TaskRun]:
        ids = [UUID(i) for i in flow_run_ids]
        if not ids:
            return []
        out: list[TaskRun] = []
        for chunk in _chunks(ids, self.page_size):
            out += await self._page_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)),
                task_run_filter=TaskRunFilter(
                    start_time=TaskRunFilterStartTime(after_=since, before_=until)
                ),
            )
        return out

    # -- events ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def events(
        self, flow_run_ids: Sequence[str], tags: Sequence[str] = ()
    ) -> AsyncIterator[PrefectEventSubscriber]:
        """Prefect's event stream for these flow runs (or runs with these tags) and their
        task runs."""
        ids = [f"prefect.flow-run.{i}" for i in flow_run_ids] + [f"prefect.tag.{t}" for t in tags]
        flt = EventFilter(
            event=EventNameFilter(prefix=["prefect.flow-run.", "prefect.task-run."]),
            any_resource=EventAnyResourceFilter(id=ids),
        )
        subscriber = PrefectEventSubscriber(api_url=self.api_url, filter=flt)
        async with subscriber:
            yield subscriber

    @contextlib.asynccontextmanager
    async def run_events(self) -> AsyncIterator[PrefectEventSubscriber]:
        """Prefect's event stream for every flow run and task run (feeds the read cache)."""
        flt = EventFilter(event=EventNameFilter(prefix=["prefect.flow-run.", "prefect.task-run."]))
        subscriber = PrefectEventSubscriber(api_url=self.api_url, filter=flt)
        async with subscriber:
            yield subscriber


def _expected_start(tr: TaskRun) -> datetime:
    return tr.expected_start_time or tr.created or datetime.min.replace(tzinfo=UTC)


def _chunks(items: list[UUID], size: int) -> Iterator[list[UUID]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
