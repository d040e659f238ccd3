"""SSH-specific behaviour over the real jump host + login node: reconnects, auth, host keys."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sim.sshd import SshPair
from steps.remote.errors import HostKeyError, RemoteConnectionError
from steps.remote.site import RemoteSite
from steps.remote.ssh import SshTransport
from tests.remote.conftest import wait_for


def test_runs_on_login_node_through_jump_host(ssh_site: RemoteSite, sim_ssh: SshPair) -> None:
    res = ssh_site.run("id -un; echo $SSH_CONNECTION")
    user, conn = res.stdout.splitlines()
    assert user == "topup"
    assert conn.split()[-1] == str(sim_ssh.login_port)
    assert ssh_site.transport.stats.sessions == 1
    # The login node saw the connection arrive through the jump host's forwarding.
    assert str(sim_ssh.login_port) in sim_ssh.log_text("jump")


def test_one_connection_reused(ssh_site: RemoteSite, sim_ssh: SshPair) -> None:
    for _ in range(5):
        assert ssh_site.run("true").ok
    assert ssh_site.transport.stats.sessions == 1
    assert sim_ssh.sessions("login") >= 1


@pytest.mark.parametrize("hop", ["login", "jump"])
def test_reconnect_after_dropped_session(ssh_site: RemoteSite, sim_ssh: SshPair, hop: str) -> None:
    assert ssh_site.run("echo one").stdout == "one\n"
    sessions = ssh_site.transport.stats.sessions
    assert sim_ssh.kill_sessions(hop) >= 1  # type: ignore[arg-type]
    res = ssh_site.run("echo two")
    assert res.stdout == "two\n"
    assert ssh_site.transport.stats.sessions == sessions + 1


def test_drop_during_command_raises_connection_error(
    ssh_site: RemoteSite, sim_ssh: SshPair
) -> None:
    """The command may have started: no silent retry, RemoteConnectionError instead."""
    ssh_site.run("true")
    marker = "slee[p] 43.3"
    killer_done = threading.Event()

    def kill_when_running() -> None:
        wait_for(lambda: _local_pgrep("sleep 43.3"), 10, "the remote sleep to start")
        sim_ssh.kill_sessions("login")
        killer_done.set()

    t = threading.Thread(target=kill_when_running)
    t.start()
    start = time.monotonic()
    with pytest.raises(RemoteConnectionError, match="may"):
        ssh_site.run("sleep 43.3", timeout=30)
    t.join()
    assert killer_done.is_set()
    assert time.monotonic() - start < 30  # not the 43 s sleep
    assert ssh_site.transport.stats.retries == 0  # it may have run: never run twice
    # The next call reconnects; the orphan is cleaned up by its remote time limit or here.
    ssh_site.run(f"pkill -f '{marker}' || true")
    assert ssh_site.transport.stats.sessions == 2


def _local_pgrep(text: str) -> bool:
    """The sshd pair runs on this machine: look for a process by command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.strip() == text:
            return True
    return False


def test_password_auth(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site = ssh_site_factory(auth="password")
    assert site.settings.login.key_file is None and site.settings.login.password is not None
    assert site.run("id -un").stdout == "topup\n"
    assert sim_ssh.password not in caplog.text


def test_wrong_password_is_a_clear_error_without_the_secret(
    ssh_site_factory: Callable[..., RemoteSite],
    sim_ssh: SshPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    good = sim_ssh.client_overrides(auth="password")
    bad_secret = "Wr0ng-s3cret-" + sim_ssh.password[:4]
    login = {**good["login"], "password": bad_secret}
    site = ssh_site_factory(auth="password", login=login)
    with pytest.raises(RemoteConnectionError) as info:
        site.run("true")
    message = str(info.value)
    assert "authentication failed" in message and str(sim_ssh.login_port) in message
    for secret in (bad_secret, sim_ssh.password):
        assert secret not in message
        assert secret not in repr(info.value.__cause__ or "")
        assert secret not in caplog.text
    assert site.transport.stats.commands == 0
    assert site.transport.stats.retries == 0  # a wrong password is not retried


def _known_hosts_with(path: Path, entries: dict[str, str]) -> Path:
    path.write_text("".join(f"{host} {key}\n" for host, key in entries.items()))
    return path


def test_host_key_mismatch_refused_and_nothing_ran(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair, tmp_path: Path
) -> None:
    """The login node presents a key that differs from known_hosts (the jump host's)."""
    known = _known_hosts_with(
        tmp_path / "known_hosts",
        {
            f"[127.0.0.1]:{sim_ssh.jump_port}": sim_ssh.host_public_key("jump"),
            f"[127.0.0.1]:{sim_ssh.login_port}": sim_ssh.host_public_key("jump"),
        },
    )
    marker = tmp_path / "ran"
    for accept in (False, True):  # a mismatch is refused even with accept_new_host_keys
        site = ssh_site_factory(known_hosts_file=known, accept_new_host_keys=accept)
        with pytest.raises(HostKeyError) as info:
            site.run(f"touch {marker}")
        message = str(info.value)
        assert f"127.0.0.1:{sim_ssh.login_port}" in message
        assert "does not match" in message
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert site.transport.stats.commands == 0
        assert site.transport.stats.sessions == 0
    assert not marker.exists()
    assert known.read_text().count("\n") == 2  # the file was not touched


def test_unknown_host_refused_without_opt_in(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    site = ssh_site_factory(known_hosts_file=known)
    with pytest.raises(HostKeyError) as info:
        site.run("true")
    assert f"127.0.0.1:{sim_ssh.jump_port}" in str(info.value)  # first hop checked first
    assert "not in" in str(info.value)
    assert known.read_text() == ""


def test_unknown_login_node_refused_when_only_jump_known(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair, tmp_path: Path
) -> None:
    known = _known_hosts_with(
        tmp_path / "known_hosts",
        {f"[127.0.0.1]:{sim_ssh.jump_port}": sim_ssh.host_public_key("jump")},
    )
    site = ssh_site_factory(known_hosts_file=known)
    with pytest.raises(HostKeyError, match=f"127.0.0.1:{sim_ssh.login_port}"):
        site.run("true")


def test_unknown_host_accepted_and_stored_with_opt_in(
    ssh_site_factory: Callable[..., RemoteSite],
    sim_ssh: SshPair,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    known = tmp_path / "sub" / "known_hosts"  # not even there yet
    site = ssh_site_factory(known_hosts_file=known, accept_new_host_keys=True)
    with caplog.at_level(logging.WARNING, logger="topup.remote"):
        assert site.run("echo ok").stdout == "ok\n"
    accepted = [r.getMessage() for r in caplog.records if "accepted NEW host key" in r.getMessage()]
    # Each host is logged (a record may also reach caplog through Prefect's handler).
    assert {m.split()[5] for m in accepted} == {
        f"127.0.0.1:{sim_ssh.jump_port}",
        f"127.0.0.1:{sim_ssh.login_port}",
    }
    lines = known.read_text().splitlines()
    assert lines == [
        f"[127.0.0.1]:{sim_ssh.jump_port} {sim_ssh.host_public_key('jump')}",
        f"[127.0.0.1]:{sim_ssh.login_port} {sim_ssh.host_public_key('login')}",
    ]
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    # Stored keys now verify without the opt-in.
    strict = ssh_site_factory(known_hosts_file=known, accept_new_host_keys=False)
    assert strict.run("echo again").stdout == "again\n"


def test_unreachable_jump_host(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair
) -> None:
    """Refused connects are retried with backoff (0.5 + 1 s here), then given up."""
    jump = {**sim_ssh.client_overrides()["jump"], "port": _closed_port()}
    site = ssh_site_factory(jump=jump, connect_timeout=3, ssh_retry_seconds=1.5)
    with pytest.raises(RemoteConnectionError, match="cannot connect") as info:
        site.run("true")
    assert "gave up after 3 attempts" in str(info.value)
    assert site.transport.stats.retries == 2 and site.transport.stats.commands == 0


def test_login_node_down_then_back(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair
) -> None:
    ssh_site = ssh_site_factory(ssh_retry_seconds=0)
    assert ssh_site.run("true").ok
    sim_ssh.stop("login")
    try:
        with pytest.raises(RemoteConnectionError, match=str(sim_ssh.login_port)):
            ssh_site.run("true")
    finally:
        sim_ssh.start()
    assert ssh_site.run("echo back").stdout == "back\n"
    assert ssh_site.transport.stats.sessions == 2


def test_jump_host_restarted(ssh_site: RemoteSite, sim_ssh: SshPair) -> None:
    assert ssh_site.run("true").ok
    sim_ssh.restart("jump")  # same host key: known_hosts still verifies
    assert ssh_site.run("echo ok").stdout == "ok\n"
    assert ssh_site.transport.stats.sessions == 2


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_threads_share_one_connection(ssh_site: RemoteSite) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        out = ssh_site.run(f"sleep 0.2; echo {i}").stdout.strip()
        with lock:
            results.append(out)

    # More threads than sshd's default MaxSessions (10): callers queue for a channel slot.
    threads = [threading.Thread(target=work, args=(i,)) for i in range(14)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == [str(i) for i in range(14)]
    assert ssh_site.transport.stats.sessions == 1
    assert ssh_site.transport.stats.commands == 14


def test_transport_is_ssh(ssh_site: RemoteSite) -> None:
    assert isinstance(ssh_site.transport, SshTransport)
