"""The stack's health probes connect: a stopped sshd keeps its pid and its port, yet fails.

A real sshd pair of its own (SIGSTOP on the session's shared pair would stall other tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.sshd import SshPair, held_by
from tests.conftest import SIM_USER
from topup_cli.health import http_health, ssh_handshake


@pytest.fixture
def pair() -> Iterator[SshPair]:
    # Under /tmp, o+x: sshd reads the login user's keys there as that user.
    parent = Path(tempfile.mkdtemp(prefix="topup-health-", dir="/tmp"))
    parent.chmod(0o755)
    p = SshPair(workdir=parent / "sshd", user=SIM_USER).start()
    try:
        yield p
    finally:
        for role in ("jump", "login"):
            pid = p.pid(role)
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        p.stop()
        shutil.rmtree(parent, ignore_errors=True)


def test_stopped_sshd_fails_the_handshake_while_its_pid_lives(pair: SshPair) -> None:
    assert ssh_handshake("127.0.0.1", pair.login_port, timeout=2).ok
    pid = pair.pid("login")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        probe = ssh_handshake("127.0.0.1", pair.login_port, timeout=1)
        assert not probe.ok
        assert "no SSH banner" in probe.reason
        assert pair.pid("login") == pid  # the pid alone would have said "healthy"
        assert ssh_handshake("127.0.0.1", pair.jump_port, timeout=2).ok
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ssh_handshake("127.0.0.1", pair.login_port, timeout=2).ok


def test_closed_port_and_non_ssh_listener_fail() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not ssh_handshake("127.0.0.1", port, timeout=1).ok  # nothing listens
    assert not http_health(f"http://127.0.0.1:{port}/api/health", timeout=1).ok


def test_a_deliberate_outage_is_marked_held_until_the_host_is_back(pair: SshPair) -> None:
    """`topup up` leaves a host alone while a fault (topup-sim net) holds it down."""
    assert held_by(pair.workdir, "login") is None
    fault = pair.outage("login", 1.0)
    assert held_by(pair.workdir, "login") == os.getpid()
    assert not ssh_handshake("127.0.0.1", pair.login_port, timeout=1).ok
    assert fault.wait(30)
    assert held_by(pair.workdir, "login") is None
    assert ssh_handshake("127.0.0.1", pair.login_port, timeout=2).ok
    pair.refuse_connects("jump", 5)
    assert held_by(pair.workdir, "jump") == os.getpid()
    pair.clear_faults()  # cancelled: the hold goes with it
    assert held_by(pair.workdir, "jump") is None
