"""Fixtures of the remote-layer tests: a scratch tree writable by the login user, and a
RemoteSite on it through each transport (real sshd pair, or local bash).

These tests do not need the simulated site's scripts, only a directory, so they build
their own tree instead of depending on ``sim.site``.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sim import users
from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.remote.validate import q

SIM_USER = "topup"


@pytest.fixture
def remote_root() -> Iterator[Path]:
    """A scratch tree (0777, owned by the login user) with an environment script."""
    root = Path(tempfile.mkdtemp(prefix="topup-remote-", dir="/tmp"))
    os.chmod(root, 0o777)
    (root / "env.sh").write_text("export TOPUP_TEST_ENV=from-env-script\n")
    (root / "work").mkdir()
    users.chown_tree(root, SIM_USER)
    try:
        yield root
    finally:
        kill_detached_groups(root / "ctl")
        shutil.rmtree(root, ignore_errors=True)


def kill_detached_groups(control_dir: Path) -> None:
    """Leave no process behind: SIGKILL every detached group a test started."""
    for pid_file in control_dir.glob("*/pid"):
        text = pid_file.read_text().strip()
        if text.isdigit() and int(text) > 1:
            try:
                os.killpg(int(text), signal.SIGKILL)
            except ProcessLookupError:
                pass


def site_settings(root: Path, **overrides: Any) -> SiteSettings:
    base: dict[str, Any] = {
        "control_dir": str(root / "ctl"),
        "env_script": str(root / "env.sh"),
        "connect_timeout": 10.0,
        "command_timeout": 60.0,
        "downloads_dir": root / "downloads",
    }
    base.update(overrides)
    return SiteSettings(**base)


def heal(pair: SshPair) -> None:
    """Undo faults an earlier test may have left (SFTP failing or cut, a server stopped)."""
    pair.clear_faults()
    pair.start()


@pytest.fixture
def ssh_site_factory(sim_ssh: SshPair, remote_root: Path) -> Iterator[Callable[..., RemoteSite]]:
    """Make RemoteSites over the sshd pair (closed at teardown); overrides go to settings."""
    heal(sim_ssh)
    made: list[RemoteSite] = []

    def make(auth: str = "key", **overrides: Any) -> RemoteSite:
        fields = {**sim_ssh.client_overrides(auth=auth), **overrides}  # type: ignore[arg-type]
        site = RemoteSite(site_settings(remote_root, **fields))
        made.append(site)
        return site

    yield make
    for site in made:
        site.close()


@pytest.fixture
def ssh_site(ssh_site_factory: Callable[..., RemoteSite]) -> RemoteSite:
    return ssh_site_factory()


@pytest.fixture
def local_site(remote_root: Path) -> Iterator[RemoteSite]:
    site = RemoteSite(site_settings(remote_root, transport="local"))
    yield site
    site.close()


@pytest.fixture(params=["local", "ssh"])
def site(request: pytest.FixtureRequest) -> RemoteSite:
    """The same behavioural test through both transports."""
    return request.getfixturevalue(f"{request.param}_site")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_dropped(site: RemoteSite, timeout: float = 10.0) -> None:
    """Wait until the client has seen its SSH connection drop (a host just went away).

    paramiko notices a closed socket in its reader thread; a command sent before that
    would first fail on the dead connection and count one more retry than the fault made."""
    from steps.remote.ssh_link import alive

    link = site.transport._link  # type: ignore[attr-defined]
    wait_for(lambda: link._conn is None or not alive(link._conn), timeout, "the drop to be seen")


def remote_pids(site: RemoteSite, pattern: str) -> list[int]:
    """PIDs whose command line matches ``pattern``, asked through a NEW remote command.

    Callers write the pattern so it cannot match itself (``slee[p] 41.7``).
    """
    res = site.run(f"pgrep -f {q(pattern)} || true", timeout=10)
    return [int(x) for x in res.stdout.split()]
