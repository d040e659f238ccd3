"""Transient faults absorbed by the SSH layer, permanent ones given up, over the real sshd pair.

Each scenario injects a fault with the sim's knobs (refused connects, an outage, an SFTP
channel cut after N bytes), asserts the end state and the WARNING lines naming the cause,
and records the retries and the time lost (the transport's own counters) in the "transient
vs permanent" table of docs/reliability.md. Times are recorded, never asserted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sim import users
from sim.sshd import SshPair
from steps.remote.errors import DownloadError, RemoteConnectionError
from steps.remote.site import RemoteSite
from tests.chaos.report import record
from tests.remote.conftest import wait_dropped

BIG = 2_500_000  # bytes: more than two SFTP read windows (steps/remote/sftp.py _WINDOW)


@pytest.fixture
def pair(sim_ssh: SshPair) -> Iterator[SshPair]:
    """The session's sshd pair, every fault undone afterwards."""
    yield sim_ssh
    sim_ssh.clear_faults()
    sim_ssh.start()


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="topup.remote")
    return caplog


def _retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    # One record object per log call: when an earlier test in the same process left pytest's
    # capture handler on a second logger of the ``topup`` chain, caplog holds it twice.
    records = {id(r): r for r in caplog.records}.values()
    return [
        r.getMessage()
        for r in records
        if r.levelno == logging.WARNING and "retrying in" in r.getMessage()
    ]


def _record(site: RemoteSite, scenario: str, kind: str, outcome: str, **extra: object) -> None:
    stats = site.transport.stats
    record(
        group="transient",
        scenario=scenario,
        injected=scenario,
        kind=kind,
        outcome=outcome,
        retries=stats.retries,
        lost_seconds=round(stats.retry_seconds, 2),
        **extra,
    )


@pytest.mark.parametrize("hop", ["jump", "login"])
def test_refused_connects_are_absorbed(
    ssh_site: RemoteSite, pair: SshPair, warnings: pytest.LogCaptureFixture, hop: str
) -> None:
    assert ssh_site.run("true").ok
    fault = pair.refuse_connects(hop, 2)  # type: ignore[arg-type]
    wait_dropped(ssh_site)
    res = ssh_site.run("echo after")
    assert res.stdout == "after\n"
    assert fault.wait(10) and fault.refused == 2
    stats = ssh_site.transport.stats
    assert stats.retries == 2 and stats.sessions == 2
    lines = _retry_lines(warnings)
    assert len(lines) == 2
    # The cause names the refusing hop (a reset connect, or the jump host's failed forward).
    assert all(f"127.0.0.1:{pair.port(hop)}" in line for line in lines)  # type: ignore[arg-type]
    _record(
        ssh_site,
        f"{hop} host refuses the next 2 connects",
        "transient",
        "command ran once on a new session",
    )


def test_two_second_jump_outage_costs_seconds(
    ssh_site: RemoteSite, pair: SshPair, warnings: pytest.LogCaptureFixture
) -> None:
    """The measurement of issue 11: a 2 s outage of the jump host, absorbed by the backoff."""
    assert ssh_site.run("true").ok
    fault = pair.outage("jump", 2.0)
    wait_dropped(ssh_site)
    res = ssh_site.run("echo back")
    assert res.stdout == "back\n"
    assert fault.wait(10)
    assert ssh_site.transport.stats.retries >= 1
    lines = _retry_lines(warnings)
    assert lines and all("Connection refused" in line for line in lines)
    _record(ssh_site, "jump host down for 2 s", "transient", "command ran once after reconnect")


def test_outage_longer_than_the_budget_is_given_up(
    ssh_site_factory: Callable[..., RemoteSite], pair: SshPair, warnings: pytest.LogCaptureFixture
) -> None:
    site = ssh_site_factory(ssh_retry_seconds=1.5)
    assert site.run("true").ok
    pair.outage("login", 60.0)
    with pytest.raises(RemoteConnectionError, match="gave up after 3 attempts") as info:
        site.run("echo never")
    assert str(pair.login_port) in str(info.value)
    assert site.transport.stats.commands == 1  # the second command never started
    assert any("giving up" in r.getMessage() for r in warnings.records)
    _record(
        site,
        "login node down longer than the retry budget (1.5 s)",
        "permanent",
        "RemoteConnectionError to the step (task retry / operator)",
    )


def _big_file(site: RemoteSite) -> tuple[Path, str]:
    d = Path(site.settings.control_dir).parent / "work"
    path = d / "big.pdf"
    data = os.urandom(BIG)
    path.write_bytes(data)
    users.chown_tree(d, "topup")
    return path, hashlib.sha256(data).hexdigest()


def test_sftp_channel_cut_resumes_on_the_live_connection(
    ssh_site: RemoteSite,
    pair: SshPair,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="topup.remote")
    remote, sha = _big_file(ssh_site)
    ssh_site.run("true")
    pair.cut_sftp(1_600_000, 1)
    facts = ssh_site.download(str(remote), tmp_path / "big.pdf")
    assert facts.sha256 == sha
    assert hashlib.sha256((tmp_path / "big.pdf").read_bytes()).hexdigest() == sha
    assert [p.name for p in tmp_path.iterdir()] == ["big.pdf"]  # no partial file left
    assert pair.sftp_cuts_left() == 0
    stats = ssh_site.transport.stats
    assert stats.retries == 1 and stats.sessions == 1  # a new channel, the same connection
    lines = _retry_lines(caplog)
    # paramiko's wording of the cut depends on what it was doing when the channel closed
    # ("Server connection dropped" while reading, "Socket is closed" while asking for the
    # next block): the warning names the transfer and its first attempt, not the wording.
    assert len(lines) == 1 and "SFTP download" in lines[0] and "(attempt 1)" in lines[0]
    assert any("resumes at byte" in r.getMessage() for r in caplog.records)
    _record(
        ssh_site,
        "SFTP channel killed after 1.6 MB of a 2.5 MB download",
        "transient",
        "download resumed on a new channel, sha256 verified",
    )


def test_sftp_cut_on_every_attempt_fails_the_download(
    ssh_site_factory: Callable[..., RemoteSite], pair: SshPair, tmp_path: Path
) -> None:
    site = ssh_site_factory(ssh_retry_seconds=1.5)
    remote, _ = _big_file(site)
    (tmp_path / "big.pdf").write_bytes(b"older verified copy")
    site.run("true")
    pair.cut_sftp(2000, 10)
    with pytest.raises(DownloadError, match="gave up after 3 attempts"):
        site.download(str(remote), tmp_path / "big.pdf")
    assert (tmp_path / "big.pdf").read_bytes() == b"older verified copy"
    assert [p.name for p in tmp_path.iterdir()] == ["big.pdf"]
    assert pair.sftp_cuts_left() == 7
    _record(
        site,
        "SFTP channel killed on every attempt (10 downloads)",
        "permanent",
        "DownloadError to the step; older local copy kept",
    )


def test_idempotent_command_runs_again_after_a_drop(
    ssh_site: RemoteSite, pair: SshPair, warnings: pytest.LogCaptureFixture
) -> None:
    """A command declared idempotent is run again when the connection dies under it."""
    marker = Path(ssh_site.settings.control_dir).parent / "work" / "ran"
    ssh_site.run("true")
    stop = threading.Event()

    def drop_once_it_ran() -> None:  # the first run wrote the marker: drop its connection
        while not stop.is_set():
            if marker.exists():
                pair.kill_sessions("login")
                return
            stop.wait(0.02)

    dropper = threading.Thread(target=drop_once_it_ran)
    dropper.start()
    try:
        res = ssh_site.run(f"echo run >> {marker}; sleep 1; wc -l < {marker}", 20, idempotent=True)
    finally:
        stop.set()
        dropper.join()
    assert res.ok and int(res.stdout) == 2  # it ran twice, which the caller allowed
    assert ssh_site.transport.stats.retries == 1
    assert any("may" in line for line in _retry_lines(warnings))
    _record(
        ssh_site,
        "connection dropped under an idempotent command",
        "transient",
        "command run again on a new session",
    )
