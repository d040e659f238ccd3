"""The recovery loop (deployments/recovery.py) against the session stack's real Prefect server:
what it does to Crashed runs, and the notifications it posts to a webhook on loopback.

The runs are real flow runs made Crashed through the API (flows without a deployment, so no
worker picks a rescheduled one up); each pass is limited to the test's own runs. The end to
end path — a worker killed, the heartbeat automation, another worker resuming — is in
tests/ha/test_ha_stack.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import PrefectClient
from prefect.states import Crashed, Running
from pydantic import SecretStr

from deployments.notifications import NotificationSettings, webhook_block
from deployments.recovery import (
    ATTEMPTS_LABEL,
    IRREVERSIBLE_MARKER,
    Recoverer,
    RecoverySettings,
    ensure_detection,
)
from tests.stack.test_notifications import Receiver
from topup_cli.stack import PrefectStack
from topup_cli.stack_settings import free_port

pytestmark = pytest.mark.slow


@flow(name="topup-standard")
def standard_like() -> None:
    """Stands for the flow's name only: no deployment, never run."""


@flow(name="submit-constants")
def submission_like() -> None:
    """Stands for the lead's step-8 submission flow (issue 10)."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()


async def _scenario(stack: PrefectStack, receiver: Receiver) -> dict[str, Any]:
    notify = NotificationSettings(
        webhook_url=SecretStr(f"http://127.0.0.1:{receiver.port}/hook/secret-token"),
        name=f"recov-{uuid.uuid4().hex[:8]}",
    )
    settings = RecoverySettings(max_attempts=2, name=f"recov-{uuid.uuid4().hex[:8]}")
    async with PrefectClient(api=stack.api_url) as client:
        await webhook_block(notify).asave(notify.name, overwrite=True, client=client)

        async def crashed(fl: Any, tags: list[str] | None = None, before: Any = None) -> UUID:
            run = await client.create_flow_run(fl, tags=tags or [], state=Running())
            if before is not None:
                await client.set_flow_run_state(run.id, before, force=True)
            await client.set_flow_run_state(run.id, Crashed(message="no heartbeat"), force=True)
            return run.id

        ids = {
            "standard": await crashed(standard_like),
            "submission": await crashed(submission_like),
            "tagged": await crashed(standard_like, tags=["irreversible"]),
            "marked": await crashed(
                standard_like, before=Running(message=f"step 8.3: {IRREVERSIBLE_MARKER}")
            ),
        }
        exhausted = await crashed(standard_like)
        await client.update_flow_run_labels(exhausted, {ATTEMPTS_LABEL: 2})
        ids["exhausted"] = exhausted
        recoverer = Recoverer(client, settings, notify)
        decisions = dict(await recoverer.pass_once(only=list(ids.values())))
        again = await recoverer.pass_once(only=list(ids.values()))  # nothing twice
        runs = {k: await client.read_flow_run(v) for k, v in ids.items()}
        first = await ensure_detection(client, settings)
        second = await ensure_detection(client, settings)
        found = await client.read_automations_by_name(f"{settings.name}-crashed")
        for a in found:
            await client.delete_automation(a.id)
    return {"ids": ids, "decisions": decisions, "again": again, "runs": runs,
            "automations": (first, second, found)}  # fmt: skip


def test_crashed_runs_rescheduled_or_left_for_a_person(
    stack: PrefectStack, receiver: Receiver
) -> None:
    with stack.api_settings():  # Prefect helpers that build their own client use the stack
        out = asyncio.run(_scenario(stack, receiver))
    ids, decisions, runs = out["ids"], out["decisions"], out["runs"]

    # The ordinary crashed run: back to Scheduled, attempt 1 of 2 recorded on the run.
    assert decisions[ids["standard"]].recover
    assert runs["standard"].state.name == "Scheduled"
    assert "topup recovery" in runs["standard"].state.message
    assert str(runs["standard"].labels[ATTEMPTS_LABEL]) == "1"
    # Never a database submission, whatever marks it; nor past the attempt bound.
    for key in ("submission", "tagged", "marked", "exhausted"):
        assert not decisions[ids[key]].recover, key
        assert runs[key].state.name == "Crashed", key
    assert "irreversible" in decisions[ids["submission"]].reason
    assert "gave up after 2" in decisions[ids["exhausted"]].reason
    assert out["again"] == []  # a decision is taken once per Crashed state

    # One notification per decision, saying what happened and why; the URL's token is not in it.
    bodies = {k: receiver.about(v) for k, v in ids.items()}
    assert all(len(b) == 1 for b in bodies.values()), bodies
    assert "rescheduled automatically" in bodies["standard"][0]["json"]["subject"]
    assert "needs an operator" in bodies["submission"][0]["json"]["subject"]
    assert (
        "reason: flow 'submit-constants' is irreversible" in bodies["submission"][0]["json"]["body"]
    )
    assert all(r["path"] == "/hook/secret-token" for b in bodies.values() for r in b)
    assert not any("secret-token" in r["json"]["body"] for b in bodies.values() for r in b)

    # The detection automation is created once and updated in place.
    first, second, found = out["automations"]
    assert first == second and len(found) == 1
    assert found[0].trigger.posture == "Proactive"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _relay(port: int, target: int) -> asyncio.Server:
    """A TCP relay from ``port`` to the stack's API: the API coming back on the loop's URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _start_while_away(stack: PrefectStack, failures: list[str]) -> tuple[bool, int]:
    """The loop starts on a URL where nothing answers yet; then the API appears there."""
    port = free_port()
    settings = RecoverySettings(poll_seconds=0.2, name=f"late-{uuid.uuid4().hex[:8]}")
    stop = asyncio.Event()
    async with (
        PrefectClient(api=f"http://127.0.0.1:{port}/api") as away,
        PrefectClient(api=stack.api_url) as direct,
    ):
        loop = asyncio.create_task(Recoverer(away, settings).run_forever(stop))

        async def failed_twice() -> bool:
            assert not loop.done(), loop  # the loop must outlive the missing API
            return len(failures) >= 2

        await _until(failed_twice, 120, "two failed passes")
        relay = await _relay(port, int(stack.api_url.rsplit(":", 1)[1].split("/")[0]))
        name = f"{settings.name}-crashed"
        try:

            async def detection_made() -> bool:
                return bool(await direct.read_automations_by_name(name))

            await _until(detection_made, 120, "the detection automation")
            running = not loop.done()
        finally:
            stop.set()
            await asyncio.wait_for(loop, 60)
            relay.close()
            found = await direct.read_automations_by_name(name)
            for automation in found:
                await direct.delete_automation(automation.id)
    return running, len(found)


def test_a_loop_started_while_the_api_is_away_waits_for_it(stack: PrefectStack) -> None:
    """Started during a restart or failover, the loop keeps trying instead of exiting (its
    supervisor would restart it in a loop, and give up on the stack after five)."""
    failures: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "recovery pass failed" in record.getMessage():
                failures.append(record.getMessage())

    handler = Seen()
    logger = logging.getLogger("topup.deployments.recovery")
    logger.addHandler(handler)
    try:
        running, automations = asyncio.run(_start_while_away(stack, failures))
    finally:
        logger.removeHandler(handler)
    assert running
    assert automations == 1  # made once the API answered, by the same loop
