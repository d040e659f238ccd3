"""Fixtures of the load, bad-input and security scenarios.

- ``offline_chaos_facade``: the facade over real HTTP, its own SQLite database, a Prefect URL
  where nothing listens; enough for authentication and ownership checks.
- ``chaos_facade``: the facade over real HTTP on the session's Prefect stack, sharing the
  outputs database with the flow runs (what a production facade sees).
- ``password_site``: a site file in the stack's ``TOPUP_SITES_DIR`` that reaches this test's
  simulated site with the sshd pair's *passwords* (no key), so the secret travels through
  every layer a leak could happen in.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facade.config import FacadeSettings
from sim.sshd import SshPair
from steps.config import SiteSettings
from tests.facade.served import Served, local_settings, serve
from topup_cli.stack import PrefectStack


@pytest.fixture
def offline_chaos_facade(tmp_path: Path) -> Iterator[Served]:
    settings = local_settings(tmp_path / "facade.db", tmp_path / "facade-downloads")
    with serve(settings) as served:
        yield served


@pytest.fixture
def chaos_facade(stack: PrefectStack, tmp_path: Path) -> Iterator[Served]:
    downloads = tmp_path / "facade-downloads"
    downloads.mkdir(exist_ok=True)
    settings = FacadeSettings(
        database_url=stack.topup_database_url,
        prefect_api_url=stack.api_url,
        downloads_dir=downloads,
    )
    with serve(settings) as served:
        yield served


def write_site_file(stack: PrefectStack, settings: SiteSettings, secrets: bool) -> str:
    """Write ``settings`` as a site file of the stack (0600) and return its name.

    ``secrets``: keep the hop passwords (``model_dump`` masks SecretStr as ``**********``).
    """
    name = f"chaos-{uuid.uuid4().hex[:10]}"
    data: dict[str, Any] = settings.model_dump(
        mode="json", exclude={"jump_password", "login_password"}
    )
    for hop in ("jump", "login"):
        source = getattr(settings, hop)
        if data.get(hop) is None or source is None:
            continue
        if secrets and source.password is not None:
            data[hop]["password"] = source.password.get_secret_value()
        else:
            data[hop].pop("password", None)
    path = stack.sites_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    path.chmod(0o600)
    return name


@pytest.fixture
def password_site(
    stack: PrefectStack, ssh_password_settings: SiteSettings, tmp_path: Path
) -> Iterator[str]:
    settings = ssh_password_settings.model_copy(update={"downloads_dir": tmp_path / "downloads"})
    name = write_site_file(stack, settings, secrets=True)
    try:
        yield name
    finally:
        (stack.sites_dir / f"{name}.json").unlink(missing_ok=True)


@pytest.fixture
def site_password(sim_ssh: SshPair) -> str:
    """The secret that must never show up anywhere (both hops use it)."""
    assert len(sim_ssh.password) >= 8
    return sim_ssh.password
