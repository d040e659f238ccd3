"""Fixtures of the flow tests: a real Prefect API (one test harness per session) and the
simulated site over the real sshd pair as the flows' ``default`` site.

- ``prefect_api`` (session): ``prefect_test_harness`` with its own result storage.
- ``flow_env`` (function): ``TOPUP_SITES_DIR/default.json`` pointing at this test's simulated
  tree over SSH, a fresh outputs DB, fast sim jobs and fast pause polling.
- ``Driver``: watches a flow run from another thread (the flow itself runs in the main thread,
  as it does in a worker) and resumes it, polling the Prefect API with a deadline.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)
from prefect.testing.utilities import prefect_test_harness

from steps.config import SiteSettings
from steps.session import close_sites
from store.db import reset_engines
from tests.fixtures_stack import settled

# Fast simulated jobs and polling (the whole suite must stay quick on 2 cores).
SIM_FAST = {"job_seconds": 0.1, "draw_seconds": 0.05, "pause_seconds": 0.0}
FAST = {"max_wait_minutes": 1.0, "poll_seconds": 0.1}
ROUND = "round18"


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    results = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings(
        {PREFECT_LOCAL_STORAGE_PATH: results, PREFECT_SERVER_ANALYTICS_ENABLED: False}
    ):
        with prefect_test_harness(server_startup_timeout=180):
            yield


@dataclass
class FlowEnv:
    sim: Any  # sim.site.SimSite
    settings: SiteSettings
    downloads: Path
    db_url: str


@pytest.fixture
def flow_env(
    prefect_api: None,
    sim: Any,
    ssh_settings: SiteSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FlowEnv]:
    sim.set_faults(**SIM_FAST)
    downloads = tmp_path / "downloads"
    settings = ssh_settings.model_copy(update={"downloads_dir": downloads})
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "default.json").write_text(settings.model_dump_json())
    db_url = f"sqlite:///{tmp_path / 'topup.db'}"
    monkeypatch.setenv("TOPUP_SITES_DIR", str(sites))
    monkeypatch.setenv("TOPUP_DATABASE_URL", db_url)
    monkeypatch.setenv("TOPUP_PAUSE_POLL_SECONDS", "0.2")
    monkeypatch.setenv("TOPUP_RETRY_DELAY_SCALE", "0.005")
    close_sites()
    reset_engines()
    try:
        yield FlowEnv(sim=sim, settings=settings, downloads=downloads, db_url=db_url)
    finally:
        close_sites()
        reset_engines()


def unique_tag() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def poll(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Return ``condition()`` once truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def runs_tagged(tag: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )


def read_run(flow_run_id: Any) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def task_runs(flow_run_id: Any) -> list[TaskRun]:
    from prefect.client.schemas.filters import FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
        )
    return sorted(runs, key=lambda t: t.expected_start_time or t.created)  # type: ignore[arg-type, return-value]


def settled_task_runs(flow_run_id: Any) -> list[TaskRun]:
    """Task runs of a flow run that has ended, once their states arrived (``settled``)."""
    return settled(lambda: task_runs(flow_run_id))


class Driver:
    """Runs ``script`` in a background thread; ``join()`` re-raises what went wrong there."""

    def __init__(self, script: Callable[[], None]) -> None:
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)

    def _run(self, script: Callable[[], None]) -> None:
        try:
            script()
        except BaseException:
            self.error = traceback.format_exc()

    def __enter__(self) -> Driver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=60)

    def check(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "driver thread still running"
        assert self.error is None, self.error


def wait_paused(tag: str, key: str | None = None, timeout: float = 90) -> FlowRun:
    """The flow run tagged ``tag`` once it is Paused (at the pause ``key`` when given)."""

    def paused() -> FlowRun | None:
        for r in runs_tagged(tag):
            if r.state is not None and r.state.is_paused():
                if key is None or r.state.state_details.pause_key == key:
                    return r
        return None

    return poll(paused, timeout, f"a run tagged {tag} paused at {key or 'any key'}", every=0.2)


def operate(
    tag: str, plan: list[tuple[str, dict[str, Any]]], timeout: float = 120
) -> Callable[[], None]:
    """A driver script: answer exactly these pauses, in this order, as the UI would.

    Each entry is ``(pause key, run_input)``; a key that never comes fails the test (the flow
    asked something else, or nothing).
    """
    from prefect.flow_runs import resume_flow_run

    def script() -> None:
        for key, run_input in plan:
            run = wait_paused(tag, key, timeout=timeout)
            resume_flow_run(run.id, run_input=run_input)

    return script
