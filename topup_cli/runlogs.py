"""Reading what runs left in Prefect: logs, table artifacts, a backfill's child runs."""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort
from rich.console import Console
from rich.markup import escape

from topup_cli.api import CliError

LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
PAGE = 200


def _task_names(client: SyncPrefectClient, run_id: UUID) -> dict[UUID, str]:
    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
        sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        limit=PAGE,
    )
    return {t.id: t.name for t in tasks}


def print_logs(
    client: SyncPrefectClient, run_id: UUID, console: Console, follow: bool = False
) -> int:
    """Every log line of the run, oldest first; with ``follow`` until the run is final."""
    offset = 0
    names: dict[UUID, str] = {}
    while True:
        batch = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
            limit=PAGE,
            offset=offset,
            sort=LogSort.TIMESTAMP_ASC,
        )
        for log in batch:
            if log.task_run_id is not None and log.task_run_id not in names:
                names = _task_names(client, run_id)
            where = names.get(log.task_run_id, "?") if log.task_run_id else "flow"
            level = LEVELS.get(log.level, str(log.level))
            stamp = log.timestamp.strftime("%H:%M:%S")
            console.print(f"{stamp} {level:<7} {escape(where):<22} {escape(log.message)}")
        offset += len(batch)
        if len(batch) == PAGE:
            continue
        if not follow:
            return offset
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            follow = False  # one more read picks up the last lines
        time.sleep(0.5)


def table_artifact(
    client: SyncPrefectClient, run_id: UUID, key_suffix: str | None = None
) -> list[dict[str, Any]]:
    """The rows of the run's table artifact whose key ends with ``key_suffix`` (else the
    first); a run also leaves other tables (files per step, the transcript)."""
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            type=ArtifactFilterType(any_=["table"]),
        )
    )
    if key_suffix is not None:
        artifacts = [a for a in artifacts if (a.key or "").endswith(key_suffix)]
    if not artifacts:
        raise CliError(f"flow run {run_id} left no table artifact")
    data = artifacts[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    if not isinstance(rows, list):
        raise CliError("unexpected artifact format")
    return rows


def watch_children(
    client: SyncPrefectClient, run_id: UUID, console: Console, timeout: float
) -> FlowRun:
    """Print the backfill's state and each child run's state changes until it is final."""
    seen: dict[UUID, str] = {}
    last = ""
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(run_id)
        if run.state_name != last:
            last = run.state_name or ""
            console.print(f"backfill: {last}")
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=PAGE,
        )
        for child in children:
            name = child.state_name or "?"
            if seen.get(child.id) != name:
                seen[child.id] = name
                console.print(f"  {child.name}: {name}")
        if run.state is not None and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            raise CliError(f"backfill {run_id} is still {last} after {timeout:.0f}s")
        time.sleep(1.0)
