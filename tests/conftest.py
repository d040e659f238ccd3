"""Fixtures every suite uses: the real sshd pair and a fresh simulated site per test.

- ``sim_ssh`` (session): one jump host + login node pair, started once.
- ``site_root`` / ``sim`` (function): a new tree under /tmp, owned by the login user so
  commands run over SSH can write it; jobs stopped and the tree removed afterwards.
- ``ssh_settings`` / ``ssh_password_settings`` / ``local_settings``: ``SiteSettings`` for
  that tree over SSH (key or password auth) or through the local transport.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sim import users
from sim.sshd import SshPair
from steps.config import SiteSettings

pytest_plugins = ["tests.fixtures_stack"]

SIM_USER = "topup"


def _site_module() -> ModuleType:
    """``sim.site``, or skip the test while it does not exist yet (other errors propagate)."""
    try:
        return importlib.import_module("sim.site")
    except ModuleNotFoundError as exc:
        if exc.name in ("sim.site",):
            pytest.skip("sim.site is not available")
        raise


def heal(pair: SshPair) -> SshPair:
    """Undo what an earlier test may have left: SFTP fault on or cut, a server stopped."""
    pair.clear_faults()
    pair.follow_faults(None)
    return pair.start()  # starts only the servers that are not running


@pytest.fixture(scope="session")
def sim_ssh() -> Iterator[SshPair]:
    """The simulated jump host and login node, shared by the whole session."""
    pair = SshPair(user=SIM_USER)
    pair.start()
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture
def site_root() -> Iterator[Path]:
    """An empty directory under /tmp that the login user owns; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="topup-site-", dir="/tmp"))
    os.chmod(root, 0o755)
    users.chown_tree(root, SIM_USER)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sim(site_root: Path) -> Iterator[Any]:
    """A fresh simulated site (``sim.site.SimSite``) built in ``site_root``."""
    site = _site_module().build_site(site_root)
    # Built as root; the login user must be able to write it over SSH.
    users.chown_tree(site_root, SIM_USER)
    try:
        yield site
    finally:
        site.stop_jobs()


def _over_ssh(sim: Any, site_root: Path, pair: SshPair, auth: str) -> Iterator[SiteSettings]:
    heal(pair)
    # The site's own "sftp_fail" fault (root/.sim/faults.json) then breaks SFTP too.
    pair.follow_faults(site_root / ".sim" / "faults.json")
    try:
        yield sim.settings(**pair.client_overrides(auth=auth))  # type: ignore[arg-type]
    finally:
        pair.follow_faults(None)


@pytest.fixture
def ssh_settings(sim: Any, site_root: Path, sim_ssh: SshPair) -> Iterator[SiteSettings]:
    """Settings for ``sim`` reached through the sshd pair with the client key."""
    yield from _over_ssh(sim, site_root, sim_ssh, "key")


@pytest.fixture
def ssh_password_settings(sim: Any, site_root: Path, sim_ssh: SshPair) -> Iterator[SiteSettings]:
    """Settings for ``sim`` reached through the sshd pair with passwords only."""
    yield from _over_ssh(sim, site_root, sim_ssh, "password")


@pytest.fixture
def local_settings(sim: Any) -> SiteSettings:
    """Settings for ``sim`` through the local transport (no SSH)."""
    return sim.settings(transport="local")
