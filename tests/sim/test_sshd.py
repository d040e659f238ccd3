"""The simulated jump host and login node, tested with paramiko directly (real sshd).

The remote layer is tested elsewhere; here we prove the site it will talk to behaves like
the real one: the route goes through the jump host, both auth methods work, host keys are
checked, SFTP works and fails on demand, and connections can be dropped.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from pydantic import SecretStr

from sim.sshd import HOST, SshdError, SshPair, free_port, ssh_banner
from steps.config import HostSettings, SiteSettings

TIMEOUT = 10.0


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT, what: str = "") -> None:
    """Poll until ``condition`` holds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def strict_client(known_hosts: Path | None) -> paramiko.SSHClient:
    """A client that refuses unknown host keys (the production policy)."""
    client = paramiko.SSHClient()
    if known_hosts is not None:
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def auth_kwargs(pair: SshPair, auth: str) -> dict[str, object]:
    kw: dict[str, object] = {"username": pair.user, "look_for_keys": False, "allow_agent": False}
    if auth == "key":
        kw["key_filename"] = str(pair.client_key)
    else:
        kw["password"] = pair.password
    return kw


class Route:
    """A paramiko connection to the login node over a direct-tcpip channel of the jump host."""

    def __init__(self, pair: SshPair, auth: str = "key") -> None:
        self.pair = pair
        self.jump = strict_client(pair.known_hosts)
        self.jump.connect(
            HOST, pair.jump_port, timeout=TIMEOUT, banner_timeout=TIMEOUT, **auth_kwargs(pair, auth)
        )
        self.login = self.hop(auth)

    def hop(self, auth: str = "key") -> paramiko.SSHClient:
        """A new login-node connection through the existing jump connection."""
        transport = self.jump.get_transport()
        assert transport is not None
        channel = transport.open_channel(
            "direct-tcpip", (HOST, self.pair.login_port), ("127.0.0.1", 0), timeout=TIMEOUT
        )
        login = strict_client(self.pair.known_hosts)
        login.connect(
            HOST,
            self.pair.login_port,
            sock=channel,
            timeout=TIMEOUT,
            banner_timeout=TIMEOUT,
            **auth_kwargs(self.pair, auth),
        )
        return login

    def close(self) -> None:
        self.login.close()
        self.jump.close()


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, out, _ = client.exec_command(command, timeout=TIMEOUT)
    text = out.read().decode()
    return out.channel.recv_exit_status(), text


@pytest.fixture
def route(sim_ssh: SshPair) -> Iterator[Route]:
    r = Route(sim_ssh, "key")
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def own_pair() -> Iterator[SshPair]:
    """A private pair for tests that stop or break servers."""
    pair = SshPair()
    pair.start()
    try:
        yield pair
    finally:
        pair.close()


# ----------------------------------------------------------------- reaching the node


@pytest.mark.parametrize("auth", ["key", "password"])
def test_login_through_jump(sim_ssh: SshPair, auth: str) -> None:
    r = Route(sim_ssh, auth)
    try:
        assert run(r.login, "id -un") == (0, "topup\n")
        assert sim_ssh.sessions("login") >= 1
        assert sim_ssh.sessions("jump") >= 1
    finally:
        r.close()


@pytest.mark.parametrize("role", ["jump", "login"])
def test_wrong_password_is_refused(sim_ssh: SshPair, role: str) -> None:
    client = strict_client(sim_ssh.known_hosts)
    try:
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(
                HOST,
                sim_ssh.port(role),  # type: ignore[arg-type]
                username="topup",
                password="not-" + secrets.token_hex(8),
                look_for_keys=False,
                allow_agent=False,
                timeout=TIMEOUT,
            )
    finally:
        client.close()


def test_password_is_per_pair_file_and_secret(sim_ssh: SshPair) -> None:
    mode = stat.S_IMODE(os.stat(sim_ssh.password_file).st_mode)
    assert mode == 0o600
    assert len(sim_ssh.password) >= 16
    assert sim_ssh.password not in repr(sim_ssh)


# ------------------------------------------------------------------------ the route


def test_jump_log_records_the_forwarding(sim_ssh: SshPair) -> None:
    marker = f"target {HOST} port {sim_ssh.login_port}"
    before = sim_ssh.log_text("jump").count(marker)
    r = Route(sim_ssh)
    try:
        run(r.login, "true")
        wait_for(lambda: sim_ssh.log_text("jump").count(marker) == before + 1, what="jump log")
    finally:
        r.close()


def test_no_route_while_jump_is_down(own_pair: SshPair) -> None:
    own_pair.stop("jump")
    assert own_pair.pid("jump") is None
    assert own_pair.pid("login") is not None
    assert ssh_banner(own_pair.login_port) is not None  # the login node itself is up
    with pytest.raises((paramiko.SSHException, OSError)):
        Route(own_pair)
    own_pair.start()
    r = Route(own_pair)
    try:
        assert run(r.login, "id -un") == (0, "topup\n")
    finally:
        r.close()


@pytest.mark.parametrize("target", ["jump-port", "other-host"])
def test_jump_forwards_only_to_login_node(sim_ssh: SshPair, route: Route, target: str) -> None:
    # Both targets listen (the jump's own port; the login port on another loopback address
    # is refused by PermitOpen before any connect), so only the policy can say no.
    dest = (HOST, sim_ssh.jump_port) if target == "jump-port" else ("127.0.0.2", sim_ssh.login_port)
    transport = route.jump.get_transport()
    assert transport is not None
    with pytest.raises(paramiko.ChannelException) as exc:
        transport.open_channel("direct-tcpip", dest, ("127.0.0.1", 0), timeout=TIMEOUT)
    assert exc.value.code == paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    wait_for(lambda: "but the request was denied" in sim_ssh.log_text("jump"), what="deny log")
    assert transport.is_active()  # the jump connection survives the refusal


def test_login_node_forwards_nothing(sim_ssh: SshPair, route: Route) -> None:
    transport = route.login.get_transport()
    assert transport is not None
    with pytest.raises(paramiko.ChannelException):
        transport.open_channel(
            "direct-tcpip", (HOST, sim_ssh.login_port), ("127.0.0.1", 0), timeout=TIMEOUT
        )


# ---------------------------------------------------------------- dropped sessions


def test_kill_sessions_drops_live_connection(sim_ssh: SshPair, route: Route) -> None:
    assert run(route.login, "echo alive") == (0, "alive\n")
    assert sim_ssh.kill_sessions("login") >= 1
    wait_for(lambda: sim_ssh.sessions("login") == 0, what="login sessions gone")
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        run(route.login, "echo alive")
    # The listener still accepts, even through the jump connection that survived.
    jump_transport = route.jump.get_transport()
    assert jump_transport is not None and jump_transport.is_active()
    again = route.hop()
    try:
        assert run(again, "id -un") == (0, "topup\n")
    finally:
        again.close()


def test_restart_jump_keeps_port_and_host_key(sim_ssh: SshPair, route: Route) -> None:
    port, key, pid = sim_ssh.jump_port, sim_ssh.host_public_key("jump"), sim_ssh.pid("jump")
    sim_ssh.restart("jump")
    assert sim_ssh.pid("jump") not in (None, pid)
    assert (sim_ssh.jump_port, sim_ssh.host_public_key("jump")) == (port, key)
    # The old connection went with the old server ...
    jump_transport = route.jump.get_transport()
    assert jump_transport is not None
    wait_for(lambda: not jump_transport.is_active(), what="old jump connection to drop")
    # ... and a new one verifies against the same known_hosts (RejectPolicy).
    r = Route(sim_ssh)
    try:
        assert run(r.login, "id -un") == (0, "topup\n")
    finally:
        r.close()


# -------------------------------------------------------------------------- SFTP


def test_sftp_works_and_fails_on_demand(sim_ssh: SshPair, route: Route) -> None:
    name = f"sftp-probe-{secrets.token_hex(4)}.txt"
    payload = secrets.token_bytes(4096)
    sftp = route.login.open_sftp()
    try:
        with sftp.open(name, "wb") as fh:
            fh.write(payload)
        with sftp.open(name, "rb") as fh:
            assert fh.read() == payload
        assert run(route.login, f"stat -c %s {name}") == (0, "4096\n")
    finally:
        sftp.close()
    try:
        sim_ssh.set_sftp_fail(True)
        # Depending on timing paramiko reports the dead subsystem either way.
        with pytest.raises((paramiko.SSHException, OSError, EOFError)):
            route.login.open_sftp()
        assert run(route.login, "true")[0] == 0  # only SFTP is broken
    finally:
        sim_ssh.set_sftp_fail(False)
    sftp = route.login.open_sftp()
    try:
        sftp.remove(name)
        assert name not in sftp.listdir(".")
    finally:
        sftp.close()


def test_sftp_follows_site_faults_file(sim_ssh: SshPair, site_root: Path, route: Route) -> None:
    faults = site_root / ".sim" / "faults.json"
    faults.parent.mkdir()
    faults.write_text(json.dumps({"job_seconds": 0.1, "sftp_fail": True}))
    try:
        sim_ssh.follow_faults(faults)
        with pytest.raises((paramiko.SSHException, OSError, EOFError)):
            route.login.open_sftp()
        faults.write_text(json.dumps({"sftp_fail": False}))
        route.login.open_sftp().close()
        faults.write_text(json.dumps({"sftp_fail": True}))
        sim_ssh.follow_faults(None)
        route.login.open_sftp().close()
    finally:
        sim_ssh.follow_faults(None)


# -------------------------------------------------------------------- host keys


@pytest.mark.parametrize("role", ["jump", "login"])
def test_unknown_host_key_is_refused(sim_ssh: SshPair, tmp_path: Path, role: str) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    client = strict_client(empty)
    try:
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            client.connect(
                HOST,
                sim_ssh.port(role),  # type: ignore[arg-type]
                timeout=TIMEOUT,
                **auth_kwargs(sim_ssh, "key"),  # type: ignore[arg-type]
            )
    finally:
        client.close()


def test_changed_host_key_is_refused(sim_ssh: SshPair, tmp_path: Path) -> None:
    # The login node's entry carries the jump host's key: a man-in-the-middle look-alike.
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{HOST}]:{sim_ssh.login_port} {sim_ssh.host_public_key('jump')}\n")
    client = strict_client(wrong)
    try:
        with pytest.raises(paramiko.BadHostKeyException):
            client.connect(
                HOST,
                sim_ssh.login_port,
                timeout=TIMEOUT,
                **auth_kwargs(sim_ssh, "key"),  # type: ignore[arg-type]
            )
    finally:
        client.close()


def test_known_hosts_names_both_servers(sim_ssh: SshPair) -> None:
    lines = sim_ssh.known_hosts.read_text().splitlines()
    assert sorted(lines) == sorted(
        f"[{HOST}]:{sim_ssh.port(r)} {sim_ssh.host_public_key(r)}"  # type: ignore[arg-type]
        for r in ("jump", "login")
    )
    assert sim_ssh.host_public_key("jump") != sim_ssh.host_public_key("login")


# --------------------------------------------------------------- settings/fixtures


def test_client_overrides_fit_site_settings(sim_ssh: SshPair) -> None:
    default = SiteSettings(**sim_ssh.client_overrides())
    assert default.login.password is not None and default.login.key_file is None  # as IHEP
    keyed = SiteSettings(**sim_ssh.client_overrides(auth="key"))
    assert keyed.transport == "ssh"
    assert keyed.jump is not None
    assert (keyed.jump.port, keyed.login.port) == (sim_ssh.jump_port, sim_ssh.login_port)
    assert keyed.login.key_file == sim_ssh.client_key and keyed.login.password is None
    assert keyed.known_hosts_file == sim_ssh.known_hosts

    pw = SiteSettings(**sim_ssh.client_overrides(auth="password"))
    assert pw.jump is not None and pw.jump.key_file is None
    assert isinstance(pw.login.password, SecretStr)
    assert pw.login.password.get_secret_value() == sim_ssh.password
    assert sim_ssh.password not in repr(pw)
    with pytest.raises(ValueError):
        sim_ssh.client_overrides(auth="kerberos")  # type: ignore[arg-type]


def test_site_root_is_writable_over_ssh(site_root: Path, route: Route) -> None:
    probe = site_root / "written-by-topup"
    assert run(route.login, f"touch {probe} && stat -c %U {probe}") == (0, "topup\n")
    assert probe.exists()


def _route_from_settings(settings: SiteSettings) -> tuple[paramiko.SSHClient, paramiko.SSHClient]:
    """Reach the login node with nothing but what the settings say (as the remote layer will)."""

    def creds(hop: HostSettings) -> dict[str, object]:
        kw: dict[str, object] = {"username": hop.user, "look_for_keys": False, "allow_agent": False}
        if hop.key_file is not None:
            kw["key_filename"] = str(hop.key_file)
        if hop.password is not None:
            kw["password"] = hop.password.get_secret_value()
        return kw

    assert settings.jump is not None
    jump = strict_client(settings.known_hosts_file)
    jump.connect(settings.jump.host, settings.jump.port, timeout=TIMEOUT, **creds(settings.jump))  # type: ignore[arg-type]
    transport = jump.get_transport()
    assert transport is not None
    dest = (settings.login.host, settings.login.port)
    channel = transport.open_channel("direct-tcpip", dest, ("127.0.0.1", 0), timeout=TIMEOUT)
    login = strict_client(settings.known_hosts_file)
    login.connect(*dest, sock=channel, timeout=TIMEOUT, **creds(settings.login))  # type: ignore[arg-type]
    return jump, login


@pytest.mark.parametrize("fixture", ["ssh_settings", "ssh_password_settings"])
def test_ssh_settings_fixtures_reach_the_sim_tree(
    request: pytest.FixtureRequest, fixture: str, local_settings: SiteSettings
) -> None:
    """The conftest fixtures give a tree the login user can use (needs sim.site; else skip)."""
    settings: SiteSettings = request.getfixturevalue(fixture)
    sim = request.getfixturevalue("sim")
    assert settings.transport == "ssh" and local_settings.transport == "local"
    assert settings.topup_root == local_settings.topup_root
    jump, login = _route_from_settings(settings)
    try:
        env = shlex.quote(settings.env_script)
        ctl = shlex.quote(settings.control_dir)
        code, out = run(
            login, f"source {env} && mkdir -p {ctl} && touch {ctl}/probe && id -un && whoami"
        )
        assert (code, out) == (0, "topup\ntopup\n")
        assert (Path(settings.control_dir) / "probe").exists()
        # The site's own sftp_fail fault reaches the login node's SFTP subsystem.
        login.open_sftp().close()
        sim.set_faults(sftp_fail=True)
        with pytest.raises((paramiko.SSHException, OSError, EOFError)):
            login.open_sftp()
    finally:
        login.close()
        jump.close()


# ------------------------------------------------------------------------ cleanup


def _pids_mentioning(text: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if text in line]


def test_stop_leaves_no_process() -> None:
    with SshPair() as pair:
        workdir = pair.workdir
        r = Route(pair)
        run(r.login, "true")
        listeners = [pair.pid("jump"), pair.pid("login")]
        pids = pair.processes()
        # Listeners plus at least the privileged and user sshd of each connection.
        assert len(pids) >= 6 and set(listeners) <= set(pids)
        assert _pids_mentioning(str(workdir))
        pair.stop()
        assert pair.processes() == []
        assert not any(Path(f"/proc/{p}").exists() and _is_live(p) for p in pids)
        assert _pids_mentioning(str(workdir)) == []
        assert ssh_banner(pair.jump_port, timeout=0.5) is None
        r.close()
    assert not workdir.exists()


def test_workdir_must_be_reachable_by_user(tmp_path: Path) -> None:
    # pytest's tmp_path is under a 0700 directory: sshd (as topup) could not read the keys.
    with pytest.raises(SshdError, match="not traversable"):
        SshPair(workdir=tmp_path / "pair").start()


def test_fixed_ports_and_stop_from_another_handle() -> None:
    """A demo pair started with fixed ports can be stopped later by a new handle."""
    ports = {"jump_port": free_port(), "login_port": free_port()}
    workdir = Path(tempfile.mkdtemp(prefix="topup-sshd-test-"))
    first = SshPair(workdir=workdir, stop_at_exit=False, **ports)
    try:
        first.start()
        assert (first.jump_port, first.login_port) == (ports["jump_port"], ports["login_port"])
        r = Route(first)
        run(r.login, "true")
        assert len(first.processes()) >= 6
        SshPair(workdir=workdir, **ports).stop()  # knows no pid: finds them by their logs
        assert first.processes() == []
        assert ssh_banner(ports["login_port"], timeout=0.5) is None
        r.close()
    finally:
        first.stop()
        assert workdir.exists()  # a given work dir is the caller's
        shutil.rmtree(workdir)


def test_taken_fixed_port_fails_cleanly() -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        pair = SshPair(login_port=taken)
        try:
            with pytest.raises(SshdError, match="did not start"):
                pair.start()
            assert pair.processes() == []
        finally:
            pair.close()


def _is_live(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
