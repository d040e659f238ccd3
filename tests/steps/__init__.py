"""Shared helpers of the step tests (fixtures live in each test module, built from these).

The steps run against the simulated site of ``tests/conftest.py``: over the real sshd pair
(``ssh_settings``) for the main paths, through the local transport for the rest.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from steps.config import SiteSettings
from steps.remote.site import RemoteSite

ROUND = "round18"
# A date of the default layout with 3 runs (5 raw files each): fast but not trivial.
DATE = "250626"
RUNS = [85420, 85421, 85422]
FAST = {"job_seconds": 0.1, "draw_seconds": 0.05, "pause_seconds": 0.0}


def open_remote(settings: SiteSettings, downloads: Path) -> Iterator[RemoteSite]:
    """A RemoteSite for the simulated tree whose downloads go to ``downloads``."""
    site = RemoteSite(settings.model_copy(update={"downloads_dir": downloads}))
    try:
        yield site
    finally:
        site.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pdf_pages(path: Path) -> int:
    """Pages of a PDF: ``/Type /Page`` objects (not ``/Pages``)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", path.read_bytes()))


def commands(site: RemoteSite) -> int:
    """Commands the transport has run so far."""
    return site.transport.stats.commands


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``condition`` until truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def assert_only_stuck_incomplete(result: Any, stuck: int, runs: list[int] = RUNS) -> None:
    """After a job-wait timeout: the never-finishing run is incomplete, and every run is
    listed exactly once. On a loaded machine a slow normal run may miss the (short) test
    deadline too, so the other runs may be in either list; an exact list raced."""
    assert stuck in result.runs_incomplete and stuck not in result.runs_complete
    assert sorted(result.runs_complete + result.runs_incomplete) == sorted(runs)
