"""Fixtures of the facade suite.

- ``offline_facade``: the facade over real HTTP with a fresh SQLite database and a Prefect API
  URL where nothing listens (a real "Prefect down" condition); enough for every route that
  does not need a flow run.
- ``live_facade``: the facade on the real Prefect stack of ``tests/fixtures_stack.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from facade.config import FacadeSettings
from tests.facade.served import Served, local_settings, serve


@pytest.fixture
def offline_settings(tmp_path: Path) -> FacadeSettings:
    return local_settings(
        tmp_path / "facade.db", tmp_path / "downloads", cors_origins=["https://ops.example.org"]
    )


@pytest.fixture
def offline_facade(offline_settings: FacadeSettings) -> Iterator[Served]:
    with serve(offline_settings) as served:
        yield served


@pytest.fixture
def live_facade(stack: Any, stack_site: str, tmp_path: Path) -> Iterator[Served]:
    """The facade on the session's real Prefect stack (server, deployments, process worker).

    It shares the outputs database with the flow runs, and serves downloads from the folder
    the test's site (``stack_site``) downloads into.
    """
    downloads = tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    settings = FacadeSettings(
        database_url=stack.topup_database_url,
        prefect_api_url=stack.api_url,
        downloads_dir=downloads,
    )
    with serve(settings) as served:
        yield served
