"""The simulated site the benchmarks run on: real sshd pair, a fresh tree, zero-latency jobs.

Why fresh trees: a flow run moves and deletes files on the site (step 1.2, the reset), so every
measured run gets a newly built tree; the sshd pair is shared by all of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sim import users
from sim.layout import SiteLayout
from sim.site import SimSite, build_site
from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.session import close_sites
from store.db import reset_engines

SIM_USER = "topup"
# Zero-latency jobs: batch jobs, ROOT drawings and the legacy per-run pauses take no time.
ZERO_LATENCY = {"job_seconds": 0.0, "draw_seconds": 0.0, "pause_seconds": 0.0}


@dataclass
class BenchSite:
    sim: SimSite
    settings: SiteSettings
    work: Path  # sites dir, downloads and the outputs database of this tree

    @property
    def sites_dir(self) -> Path:
        return self.work / "sites"


@contextmanager
def ssh_pair() -> Iterator[SshPair]:
    pair = SshPair(user=SIM_USER)
    pair.start()
    try:
        yield pair
    finally:
        pair.close()


@contextmanager
def fresh_site(pair: SshPair, layout: SiteLayout | None = None) -> Iterator[BenchSite]:
    """A new simulated tree reached over ``pair``, as the flows' ``default`` site.

    Sets ``TOPUP_SITES_DIR`` / ``TOPUP_DATABASE_URL`` for in-process flow runs and restores
    them afterwards.
    """
    root = Path(tempfile.mkdtemp(prefix="topup-bench-site-", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="topup-bench-work-", dir="/tmp"))
    os.chmod(root, 0o755)
    users.chown_tree(root, SIM_USER)
    sim = build_site(root, layout)
    users.chown_tree(root, SIM_USER)
    sim.set_faults(**ZERO_LATENCY)
    pair.follow_faults(root / ".sim" / "faults.json")
    settings = sim.settings(**pair.client_overrides(auth="key")).model_copy(
        update={"downloads_dir": work / "downloads"}
    )
    (work / "sites").mkdir()
    (work / "sites" / "default.json").write_text(settings.model_dump_json())
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ.update(
        TOPUP_SITES_DIR=str(work / "sites"),
        TOPUP_DATABASE_URL=f"sqlite:///{work / 'topup.db'}",
        TOPUP_PAUSE_POLL_SECONDS="0.2",
        TOPUP_RETRY_DELAY_SCALE="0.005",
    )
    close_sites()
    reset_engines()
    try:
        yield BenchSite(sim, settings, work)
    finally:
        close_sites()
        reset_engines()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        pair.follow_faults(None)
        sim.stop_jobs()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


ENV_KEYS = (
    "TOPUP_SITES_DIR",
    "TOPUP_DATABASE_URL",
    "TOPUP_PAUSE_POLL_SECONDS",
    "TOPUP_RETRY_DELAY_SCALE",
)


@contextmanager
def prefect_in_process(ui: bool = False) -> Iterator[Path]:
    """A real Prefect server (``prefect server start`` with its own SQLite, run by
    ``topup_cli.stack``) that this process's flows report to.

    The flow then runs in this process exactly as a worker's flow-run process runs it, so the
    remote-layer hook and the sleep watch see everything. ``ui``: serve the Prefect UI too
    (``bench.physics_shots`` takes a screenshot of an artifact there).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    from topup_cli.stack import PrefectStack, StackSettings

    data = Path(tempfile.mkdtemp(prefix="topup-bench-prefect-", dir="/tmp"))
    stack = PrefectStack(
        StackSettings(data_dir=data, isolate_topup_env=True, start_timeout=600, ui=ui)
    )
    try:
        stack.start_server()
        with temporary_settings(
            {
                PREFECT_API_URL: stack.api_url,
                PREFECT_LOCAL_STORAGE_PATH: data / "results",
                PREFECT_SERVER_ANALYTICS_ENABLED: False,
            }
        ):
            yield data
            _flush_api_logs()
    finally:
        stack.stop()
        shutil.rmtree(data, ignore_errors=True)


def _flush_api_logs() -> None:
    """Ship the flow runs' pending API logs while the server still listens."""
    from prefect.logging.handlers import APILogHandler

    try:
        APILogHandler.flush()
    except Exception:  # noqa: BLE001 - logs are best effort; the figures are measured
        pass
