"""Webhook notifications from Prefect automations, on the session stack's real server.

A tiny HTTP receiver on loopback stands for the operators' chat webhook. The automations are
created the way ``PrefectStack.setup`` / ``python -m deployments.setup`` create them, then
three real flow runs (a completed one, a failed one on a site that does not exist, one paused
for an operator's decision because its date has no raw data, then aborted by the operator) must
each produce a POST naming the run and its state, sent by the server's triggers and actions
services; the subject names the round, the date and the decision that waits, and an abort says
who aborted and why (never the "ended Failed" notification).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from deployments.notifications import (
    KINDS,
    NotificationSettings,
    ensure_notifications,
    remove_notifications,
)
from deployments.setup import POOL_NAME
from deployments.setup import setup as setup_deployments
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST, state_name
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow

ROUND = "round18"
EMPTY_DATE = "250627"  # in DATA, without raw files: step 1.1 fails with code 70 (manual)


class Receiver:
    """Records every request it gets; answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with receiver.cond:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "json": json.loads(raw),
                            "at": time.time(),
                        }
                    )
                    receiver.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def about(self, flow_run_id: object) -> list[dict[str, Any]]:
        with self.cond:
            return [r for r in self.requests if f"flow_run_id: {flow_run_id}" in r["json"]["body"]]

    def wait_for(self, flow_run_id: object, state: str, timeout: float = 120.0) -> dict[str, Any]:
        """The first request about the run in ``state``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for r in self.about(flow_run_id):
                    if f"\nstate: {state}\n" in r["json"]["body"]:
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [r["json"]["subject"] for r in self.about(flow_run_id)]
                    pytest.fail(f"no {state} notification for {flow_run_id}; got {seen}")
                self.cond.wait(left)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def notify(stack: PrefectStack, receiver: Receiver) -> Iterator[NotificationSettings]:
    """Notifications of every project flow to the receiver, removed afterwards."""
    token = uuid.uuid4().hex
    settings = NotificationSettings(
        webhook_url=SecretStr(f"http://127.0.0.1:{receiver.port}/hooks/{token}"),
        webhook_headers={"X-Topup-Token": SecretStr(f"secret-{token}")},
        name=f"topup-notify-test-{token[:8]}",
        flows=["topup-standard", "available-dates", "backfill"],
    )
    try:
        yield settings
    finally:

        async def clean() -> None:
            async with stack.client() as client:
                await remove_notifications(client, settings)

        asyncio.run(clean())


def test_completed_failed_and_waiting_runs_each_post_a_notification(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    receiver: Receiver,
    notify: NotificationSettings,
) -> None:
    report = asyncio.run(setup_deployments(stack.api_url, POOL_NAME, [ROUND], None, notify))
    assert report.notifications is not None and report.notifications.enabled
    assert sorted(report.notifications.created) == sorted(notify.automation_name(k) for k in KINDS)

    sim.set_faults(**SIM_FAST)
    completed = stack_runs.start("available-dates/available-dates", round=ROUND, site=stack_site)
    failed = stack_runs.start("available-dates/available-dates", round=ROUND, site="no-such-site")
    waiting = stack_runs.start(
        "topup-standard-steps-1.0.2", date=EMPTY_DATE, round=ROUND, site=stack_site
    )

    t0 = time.monotonic()
    got = {
        "Completed": receiver.wait_for(completed.id, "Completed"),
        "Failed": receiver.wait_for(failed.id, "Failed"),
        "Paused": receiver.wait_for(waiting.id, "Paused"),
    }
    print(f"\nthree notifications after {time.monotonic() - t0:.1f}s")
    for st, run in (("Completed", completed), ("Failed", failed), ("Paused", waiting)):
        r = stack_runs.read(run.id)
        assert r.state is not None
        lag = got[st]["at"] - r.state.timestamp.timestamp()
        created = r.state.timestamp.timestamp() - run.created.timestamp()  # type: ignore[union-attr]
        print(f"{st}: state {created:.1f}s after creation, notified {lag:.1f}s later")
    for state, request in got.items():
        created = {"Completed": completed, "Failed": failed, "Paused": waiting}[state]
        run = stack_runs.read(created.id)  # named by what it is once it started
        body = request["json"]["body"]
        assert f"flow_run_name: {run.name}" in body
        assert run.name in request["json"]["subject"]
        assert request["path"] == f"/hooks/{notify.webhook_url.get_secret_value().rsplit('/')[-1]}"  # type: ignore[union-attr]
        assert (
            request["headers"]["X-Topup-Token"]
            == notify.webhook_headers["X-Topup-Token"].get_secret_value()
        )
    assert got["Paused"]["json"]["subject"] == (
        f"Top-up {ROUND} {EMPTY_DATE} waits for an operator: step 1.1 decision on an error"
        f" (run {ROUND}-{EMPTY_DATE}-topup-standard-steps-1.0.2)"
    )
    assert "waits_for: step 1.1 decision on an error\n" in got["Paused"]["json"]["body"]
    assert f"\nround: {ROUND}\ndate: {EMPTY_DATE}\n" in got["Paused"]["json"]["body"]
    assert got["Completed"]["json"]["subject"].startswith(f"Top-up {ROUND} completed (run ")
    assert "no-such-site" in got["Failed"]["json"]["body"]  # its parameters are listed
    # The states the notifications announced are the runs' real states.
    assert state_name(stack_runs.wait(completed.id)) == "Completed"
    assert state_name(stack_runs.wait(failed.id)) == "Failed"
    paused = stack_runs.read(waiting.id)
    assert paused.state is not None and paused.state.is_paused()
    # One notification per run: the failing run did not also announce a completion, etc.
    assert len(receiver.about(completed.id)) == 1
    assert len(receiver.about(failed.id)) == 1

    # The operator aborts the waiting run: Cancelled, and the notification says who and why.
    with stack.sync_client() as client:
        client.resume_flow_run(
            waiting.id, run_input={"action": "abort", "name": "hank", "note": "no raw data"}
        )
    aborted = receiver.wait_for(waiting.id, "Cancelled")
    subject = aborted["json"]["subject"]
    assert subject.startswith(f"Top-up {ROUND} {EMPTY_DATE} aborted by hank at step 1.1"), subject
    assert "no raw data" in subject and "ended" not in subject
    assert state_name(stack_runs.wait(waiting.id)) == "Cancelled"
    assert not [r for r in receiver.about(waiting.id) if "\nstate: Failed\n" in r["json"]["body"]]

    # The webhook's URL and header value are secrets: obfuscated when read back, not in the
    # server's log.
    secret = notify.webhook_headers["X-Topup-Token"].get_secret_value()
    url = notify.webhook_url.get_secret_value()  # type: ignore[union-attr]

    async def stored() -> str:
        async with stack.client() as client:
            doc = await client.read_block_document_by_name(
                notify.name, "custom-webhook", include_secrets=False
            )
        return json.dumps(doc.data)

    shown = asyncio.run(stored())
    assert secret not in shown and url not in shown
    server_log = (stack.log_dir / "server.log").read_text()
    assert secret not in server_log and url not in server_log


def test_setup_is_idempotent_and_off_without_a_url(
    stack: PrefectStack, notify: NotificationSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with stack.client() as client:
            first = await ensure_notifications(client, notify)
            again = await ensure_notifications(client, notify)
            assert again.created == [] and sorted(again.updated) == sorted(first.created)
            assert again.automation_ids == first.automation_ids
            assert again.block_id == first.block_id
            for name in first.automation_ids:
                assert len(await client.read_automations_by_name(name)) == 1

            # Fewer kinds: the automation of the dropped kind goes away.
            fewer = notify.model_copy(update={"on": ["failed"]})
            only = await ensure_notifications(client, fewer)
            assert list(only.automation_ids) == [notify.automation_name("failed")]
            assert await client.read_automations_by_name(notify.automation_name("completed")) == []

            off = notify.model_copy(update={"webhook_url": None, "name": "topup-notify-off"})
            with caplog.at_level(logging.INFO, logger="topup.deployments.notifications"):
                report = await ensure_notifications(client, off)
            assert not report.enabled and report.automation_ids == {}
            assert "notifications are off" in caplog.text
            for kind in KINDS:
                assert await client.read_automations_by_name(off.automation_name(kind)) == []

    asyncio.run(scenario())
