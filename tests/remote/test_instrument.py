"""The remote layer's optional observer (steps.remote.instrument), used by bench/.

Off by default; when installed it sees every command with its wall-clock interval, and the
SSH transport reports each session it opens (one per connection, reused by later commands).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from steps.config import SiteSettings
from steps.remote import instrument
from steps.remote.instrument import RemoteEvent
from steps.remote.local import LocalTransport
from steps.remote.site import RemoteSite


@pytest.fixture
def events() -> Iterator[list[RemoteEvent]]:
    seen: list[RemoteEvent] = []
    previous = instrument.set_observer(seen.append)
    try:
        yield seen
    finally:
        instrument.set_observer(previous)


def test_off_by_default_reports_nothing() -> None:
    assert instrument.set_observer(None) is None  # nothing installed outside a bench
    LocalTransport().run("true", 10)  # and running a command with no observer is fine


def test_local_commands_are_reported_with_their_interval(events: list[RemoteEvent]) -> None:
    before = time.time()
    res = LocalTransport().run("# topup: probe one\nsleep 0.2", 10)
    assert res.ok
    assert len(events) == 1
    ev = events[0]
    assert ev.kind == "command" and ev.label == "topup: probe one"
    assert before <= ev.start < ev.end <= time.time()
    assert 0.2 <= ev.seconds < 5


def test_ssh_reports_one_session_for_many_commands(
    ssh_settings: SiteSettings, events: list[RemoteEvent]
) -> None:
    site = RemoteSite(ssh_settings)
    try:
        for i in range(3):
            assert site.run(f"echo {i}").stdout.strip() == str(i)
    finally:
        site.close()
    kinds = [e.kind for e in events]
    assert kinds.count("session") == 1
    assert kinds.count("command") == 3
    assert [e.label for e in events if e.kind == "command"] == ["echo 0", "echo 1", "echo 2"]
    assert site.transport.stats.sessions == 1
