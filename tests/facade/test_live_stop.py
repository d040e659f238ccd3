"""A live watcher stops when told to, also while it waits for its previous read to end.

Seen once in CI: a Socket.IO ``unsubscribe_task`` never answered. The watcher had been
restarted (a cancel request) and was waiting for its cancelled read to finish when the
unsubscribe stopped it; that wait swallowed the stop, the watcher went round its loop
again and ``stop()`` waited for ever. The slow-to-finish read is made here by a watcher
whose read takes a moment to clean up after its cancellation (no Prefect needed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from facade.live import LiveHub, _Watcher


class _SlowToCancel(_Watcher):
    """A watcher whose read needs a moment to clean up once cancelled."""

    def __init__(self, hub: LiveHub, task_id: int) -> None:
        super().__init__(hub, task_id)
        self.cleaning_up = asyncio.Event()
        self.reads = 0

    async def _follow(self) -> None:
        self.reads += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cleaning_up.set()
            await asyncio.sleep(0.5)  # e.g. closing a connection to Prefect
            raise


def test_a_watcher_stopped_while_its_read_cleans_up_stops() -> None:
    async def scenario() -> None:
        hub: Any = LiveHub(engine=None, gateway=None)  # type: ignore[arg-type]
        watcher = _SlowToCancel(hub, 1)
        watcher.start()
        while watcher.reads == 0:
            await asyncio.sleep(0)
        watcher.restart.set()  # a request changed the task: the read is cancelled ...
        await asyncio.wait_for(watcher.cleaning_up.wait(), 5)
        await asyncio.wait_for(watcher.stop(), 5)  # ... and the watcher is stopped meanwhile
        assert watcher.runner is not None and watcher.runner.done()
        assert watcher.reads == 1  # it did not start another read after the stop

    asyncio.run(scenario())
