"""How the CLI reaches a stack's Prefect API, and the flow runs it creates there.

Why through deployments: a run started from the terminal must be the same thing as one
started from the UI or the facade — a flow run of a deployment, executed by the worker — so
the operator sees it, with its logs and artifacts, in the Prefect UI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound

from flows.naming import flow_run_name, run_tags
from topup_cli.settings import CliSettings
from topup_cli.state import StackState, read_state


class CliError(RuntimeError):
    """A problem to show the operator in one line (no traceback)."""


@dataclass
class Target:
    """The API of one stack, and what its state file says about it (if it was `topup up`)."""

    api_url: str
    state: StackState | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url.rstrip("/").removesuffix("/api")

    def run_url(self, run_id: UUID | str) -> str:
        return f"{self.ui_url}/runs/flow-run/{run_id}"

    @property
    def default_site(self) -> str:
        return self.state.default_site if self.state else "default"

    def client(self) -> SyncPrefectClient:
        return SyncPrefectClient(api=self.api_url)


def resolve(settings: CliSettings, api_url: str | None = None) -> Target:
    """``--api-url``, else the state file of the data dir, else PREFECT_API_URL.

    Never a default port: a server answering on 4200 may be someone else's (another data
    dir, another user). Without any of the three this says which stack is missing and how to
    start it (CliError).
    """
    state = read_state(settings.state_file)
    if state is not None and not state.supervisor_alive():
        state = None
    if api_url:
        return Target(api_url, state if state and state.api_url == api_url else None)
    if state is not None and state.api_url:
        return Target(state.api_url, state)
    env = os.environ.get("PREFECT_API_URL")
    if env:
        return Target(env)
    raise CliError(no_stack_message(settings))


def no_stack_message(settings: CliSettings) -> str:
    """Why there is no API to talk to, and the commands that give one."""
    data = settings.data_dir.resolve()
    return (
        f"no stack is running from data dir {data} (no live stack.json there); "
        f"start one with `topup up --sim --data-dir {data}`, or name a Prefect API with "
        "--api-url or PREFECT_API_URL"
    )


def find_run(client: SyncPrefectClient, ref: str) -> FlowRun:
    """A flow run by id or by name (what the UI shows, e.g.
    ``round18-250624-topup-standard-1.2.0``; the newest run of that name)."""
    try:
        return client.read_flow_run(UUID(ref))
    except ValueError:
        pass
    except ObjectNotFound:
        raise CliError(f"no flow run with id {ref}") from None
    # Names say what a run is (round18-250624-topup-standard-1.2.0): a date run again has
    # the same name, and the name means its newest run.
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[ref])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=1,
    )
    if not runs:
        raise CliError(f"no flow run named {ref!r}")
    return runs[0]


def start_run(
    client: SyncPrefectClient,
    deployment: str,
    parameters: dict[str, Any],
    name: str | None = None,
    tags: list[str] | None = None,
) -> FlowRun:
    """Create a flow run of ``<flow>/<deployment>``; the worker picks it up. ``tags`` are
    added to the deployment's (e.g. ``facade-user:<name>``: whom the run is for), with the
    run's ``round:`` and ``date:`` tags. The run is named by what it is from the start (the
    flow names it the same way when it starts)."""
    try:
        dep = client.read_deployment_by_name(deployment)
    except ObjectNotFound:
        raise CliError(
            f"deployment {deployment!r} does not exist (is the stack up and deployed?)"
        ) from None
    given = {**(dep.parameters or {}), **parameters}
    return client.create_flow_run_from_deployment(
        dep.id,
        parameters=parameters,
        name=name or flow_run_name(deployment.split("/", 1)[0], given),
        tags=run_tags(
            [*(dep.tags or []), *(tags or [])], round=given.get("round"), date=given.get("date")
        ),
    )


def wait_final(
    client: SyncPrefectClient,
    run_id: UUID,
    timeout: float,
    on_poll: Callable[[FlowRun], None] | None = None,
    interval: float = 0.5,
) -> FlowRun:
    """Poll the run until it is final; CliError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(run_id)
        if on_poll is not None:
            on_poll(run)
        if run.state is not None and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            state = run.state.name if run.state else "unknown"
            raise CliError(f"flow run {run_id} is still {state} after {timeout:.0f}s")
        time.sleep(interval)
