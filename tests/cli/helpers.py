"""Helpers of the CLI tests: the CLI's environment, waiting, and finding leftover processes."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sim import users
from sim.layout import RoundSpec, default_layout
from sim.site import build_site
from tests.conftest import SIM_USER

T = TypeVar("T")


def data_dir() -> Path:
    """A fresh data dir the simulated site's login user can traverse to (o+x)."""
    parent = Path(tempfile.mkdtemp(prefix="topup-cli-", dir="/tmp"))
    parent.chmod(0o755)
    return parent / "var"


def cli_env(data: Path) -> dict[str, str]:
    """The caller's environment without Prefect settings, on free ports, in ``data``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TOPUP_"))}
    env.update(
        TOPUP_STACK_DATA_DIR=str(data),
        TOPUP_STACK_PREFECT_PORT="0",
        TOPUP_STACK_FACADE_PORT="0",
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line, working dir or environment mentions ``path``.

    Every process a stack starts gets PREFECT_HOME / TOPUP_SITES_DIR under its data dir (or
    runs there), so this finds anything the stack left behind, whoever its parent is.
    """
    needle = str(path.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":
                continue
            blobs = [(entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()]
            blobs.append(os.readlink(entry / "cwd").encode())
        except OSError:
            continue
        if any(needle in b for b in blobs):
            found.append(int(entry.name))
    return found


@contextmanager
def site_with_round(site_root: Path, extra: RoundSpec) -> Iterator[Any]:
    """As tests/conftest.py's ``sim``, with a round of the test file's own added to the
    default layout: no other test's run then holds that round's slot."""
    base = default_layout()
    site = build_site(site_root, base.model_copy(update={"rounds": [*base.rounds, extra]}))
    users.chown_tree(site_root, SIM_USER)
    try:
        yield site
    finally:
        site.stop_jobs()
