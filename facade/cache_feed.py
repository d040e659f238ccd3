"""Keep the facade's Prefect read cache fresh from Prefect's event stream.

Why: the read cache (``facade.read_cache``) may only serve a flow run's copy while nothing
changed; Prefect announces every state change of a flow run or task run as an event, so one
subscription for the whole facade process is enough to drop exactly the copies that changed,
instead of re-reading every run every second. Nothing is derived or stored from the events:
they only say "read this run again". While the stream is down the cache falls back to its
short TTL, so a lost connection costs speed, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prefect.events.schemas.events import Event

from facade.prefect_gateway import PrefectGateway

log = logging.getLogger("topup.facade.cache_feed")
FLOW_RUN_PREFIX = "prefect.flow-run."


def flow_run_ids(event: Event) -> set[str]:
    """The flow runs an event is about: its own resource or a related one (task runs name
    their flow run as a related resource)."""
    ids = set()
    for resource in (event.resource, *event.related):
        rid = resource.id
        if rid.startswith(FLOW_RUN_PREFIX):
            ids.add(rid[len(FLOW_RUN_PREFIX) :])
    return ids


class CacheFeed:
    """One background subscription that marks changed flow runs in the gateway's cache."""

    def __init__(self, gateway: PrefectGateway, reconnect_seconds: float = 1.0) -> None:
        self.gateway = gateway
        self.reconnect_seconds = reconnect_seconds
        self.connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._runner is None and self.gateway.cache.enabled:
            self._runner = asyncio.create_task(self._run(), name="facade-cache-feed")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        self.gateway.cache.set_live(False)

    async def _follow(self) -> None:
        cache = self.gateway.cache
        async with self.gateway.run_events() as events:
            # Copies read before the subscription may have missed a change: start afresh.
            cache.set_live(True)
            self.connected.set()
            async for event in events:
                for flow_run_id in flow_run_ids(event):
                    cache.changed(flow_run_id)

    async def _run(self) -> None:
        backoff = self.reconnect_seconds
        while True:
            try:
                await self._follow()
                backoff = self.reconnect_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Prefect down: retry, short TTL meanwhile
                log.warning("Prefect event stream for the read cache interrupted: %r", exc)
            self.connected.clear()
            self.gateway.cache.set_live(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
