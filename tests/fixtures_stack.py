"""Pytest plugin: a real Prefect stack (server + deployments + process worker) for the tests.

- ``prefect_stack`` (session, created the first time a test asks for it): one
  ``topup_cli.stack.PrefectStack`` with its own data dir under /tmp; stopped at the end of
  the session, leaving no process behind. ``TOPUP_KEEP_STACK=1`` keeps its data dir (logs).
- ``stack`` (function): the same stack with a live worker (a test that killed the worker gets
  a fresh one) and, afterwards, no flow run of the test left running.
- ``stack_site`` (function): the name of a site file in the stack's ``TOPUP_SITES_DIR`` that
  points at this test's simulated site over the real sshd pair.
- ``stack_runs`` (function): create flow runs from deployments and wait for their states;
  every run it created is cancelled at teardown if it has not finished.

Everything talks to the stack through clients built with its explicit API URL:
``prefect_test_harness`` (tests/flows) rewrites the in-process default while it is active.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, State, StateDetails, StateType, TaskRun
from prefect.client.schemas.sorting import TaskRunSort
from prefect.input.run_input import Keyset, keyset_from_base_key
from prefect.states import Cancelled, Cancelling, Scheduled

from steps.config import SiteSettings
from topup_cli.stack import PrefectStack, StackSettings

STANDARD = "topup-standard"
# Short, pre-approved runs: no operator pause, waits and polls in fractions of a second.
PREAPPROVED: dict[str, Any] = {
    "poll_seconds": 0.2,
    "approve_reset": True,
    "approved_by": "stack-tests",
}
# Environment of the flow runs of the test stack.
TEST_WORKER_ENV = {
    # Retry delays of the definitions (10-60 s) scaled down to fractions of a second.
    "TOPUP_RETRY_DELAY_SCALE": "0.01",
    # The worker asks for work every second, not every 0.25 s (the operators' setting, for
    # start latency): each ask costs the server CPU, ~9 % of a core per idle stack at 0.25 s,
    # and a test session keeps several stacks up on CI's 2 cores.
    "PREFECT_WORKER_QUERY_SECONDS": "1",
}


@pytest.fixture(scope="session")
def prefect_stack() -> Iterator[PrefectStack]:
    """The session's Prefect server, work pool, limits, deployments and first worker."""
    data_dir = Path(tempfile.mkdtemp(prefix="topup-stack-", dir="/tmp"))
    stack = PrefectStack(
        StackSettings(
            data_dir=data_dir,
            rounds=["round18", "round17"],
            worker_env=TEST_WORKER_ENV,
            isolate_topup_env=True,
            # A slow start is not a failure: a loaded 2-core machine needs minutes.
            start_timeout=600.0,
        )
    )
    stack.start()
    try:
        yield stack
    finally:
        clean = stack.stop()
        if not os.environ.get("TOPUP_KEEP_STACK"):
            shutil.rmtree(data_dir, ignore_errors=True)
        assert clean, "some process of the Prefect stack survived stop()"


@pytest.fixture
def stack(prefect_stack: PrefectStack) -> PrefectStack:
    """The session stack, with a running worker."""
    if prefect_stack.worker is None:
        prefect_stack.start_worker()
    return prefect_stack


@pytest.fixture
def stack_site(stack: PrefectStack, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[str]:
    """A site name the flow runs resolve (``TOPUP_SITES_DIR/<name>.json``) to this test's
    simulated site, reached through the sshd pair with the client key."""
    name = f"stack-{uuid.uuid4().hex[:10]}"
    settings = ssh_settings.model_copy(update={"downloads_dir": tmp_path / "downloads"})
    data = settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
    path = stack.sites_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    path.chmod(0o600)
    try:
        yield name
    finally:
        path.unlink(missing_ok=True)


def _final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()


def settled(read: Callable[[], list[TaskRun]], timeout: float = 30.0) -> list[TaskRun]:
    """``read()``'s task runs of a flow run that has ended, once each shows its final state.

    Prefect records a task run's states from its event stream, so the last step may still
    read Running a moment after the flow run's final state. Bounded: after ``timeout`` s the
    runs are returned as they are and the caller's asserts decide."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = read()
        if all(t.state is not None and t.state.is_final() for t in tasks):
            return tasks
        if time.monotonic() > deadline:
            return tasks
        time.sleep(0.2)


def paused_without_form(client: Any, flow: Any, pause_key: str) -> tuple[FlowRun, Keyset]:
    """A run of ``flow`` put in the Paused state of an input pause whose form Prefect has
    not stored yet: the moment between the state and the form's writes, made for real."""
    keyset = keyset_from_base_key(f"paused-{pause_key}")
    run = client.create_flow_run(flow, state=Scheduled())
    paused = State(
        type=StateType.PAUSED,
        name="Paused",
        state_details=StateDetails(pause_key=pause_key, run_input_keyset=keyset),
    )
    client.set_flow_run_state(run.id, paused, force=True)
    return run, keyset


class StackRuns:
    """Flow runs of one test, created from deployments of the stack."""

    def __init__(self, stack: PrefectStack) -> None:
        self.stack = stack
        self.created: list[UUID] = []

    def start(self, deployment: str, state: State[Any] | None = None, **parameters: Any) -> FlowRun:
        """Create a flow run of ``<flow>/<deployment>`` (scheduled now unless ``state``)."""
        name = deployment if "/" in deployment else f"{STANDARD}/{deployment}"
        with self.stack.sync_client() as client:
            dep = client.read_deployment_by_name(name)
            run = client.create_flow_run_from_deployment(dep.id, parameters=parameters, state=state)
        self.created.append(run.id)
        return run

    def read(self, run_id: UUID) -> FlowRun:
        with self.stack.sync_client() as client:
            return client.read_flow_run(run_id)

    def wait(
        self,
        run_id: UUID,
        condition: Callable[[FlowRun], bool] = _final,
        timeout: float = 180.0,
        what: str = "a final state",
    ) -> FlowRun:
        """Poll the run until ``condition`` holds; fail the test with its state on timeout."""
        deadline = time.monotonic() + timeout
        with self.stack.sync_client() as client:
            while True:
                run = client.read_flow_run(run_id)
                if condition(run):
                    return run
                if time.monotonic() > deadline:
                    state = run.state.name if run.state else None
                    pytest.fail(f"flow run {run_id} not in {what} after {timeout}s: {state}")
                time.sleep(0.2)

    def task_runs(self, run_id: UUID) -> list[TaskRun]:
        """Task runs of the flow run, oldest first."""
        with self.stack.sync_client() as client:
            return client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )

    def settled_task_runs(self, run_id: UUID) -> list[TaskRun]:
        """Task runs of a flow run that has ended, once their states arrived (``settled``)."""
        return settled(lambda: self.task_runs(run_id))

    def wait_task(
        self,
        run_id: UUID,
        condition: Callable[[list[TaskRun]], bool],
        timeout: float = 120.0,
        what: str = "the expected task runs",
    ) -> list[TaskRun]:
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.task_runs(run_id)
            if condition(tasks):
                return tasks
            if time.monotonic() > deadline:
                seen = [(t.name, t.state.name if t.state else None) for t in tasks]
                pytest.fail(f"flow run {run_id}: no {what} after {timeout}s; tasks: {seen}")
            time.sleep(0.2)

    def cancel_unfinished(self, timeout: float = 60.0) -> None:
        """Cancel every created run that has not finished and wait until each is final."""
        with self.stack.sync_client() as client:
            pending = []
            for run_id in self.created:
                run = client.read_flow_run(run_id)
                if _final(run):
                    continue
                if run.state is not None and (run.state.is_running() or run.state.is_pending()):
                    # A process runs it: the worker kills it and runs the cancellation hooks.
                    client.set_flow_run_state(run_id, Cancelling(), force=True)
                    pending.append(run_id)
                else:  # scheduled, paused, cancelling: no process to stop
                    client.set_flow_run_state(run_id, Cancelled(), force=True)
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                pending = [r for r in pending if not _final(client.read_flow_run(r))]
                time.sleep(0.2)


@pytest.fixture
def stack_runs(stack: PrefectStack) -> Iterator[StackRuns]:
    runs = StackRuns(stack)
    try:
        yield runs
    finally:
        runs.cancel_unfinished()
