"""Reading what runs left in Prefect: logs, table artifacts, a backfill's child runs."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
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
    LogFilterTimestamp,
)
from prefect.client.schemas.objects import FlowRun, Log
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


# Log lines reach the server in batches, each process on its own schedule (worker, flow run,
# its tasks): a line may arrive after later-stamped ones were read. Following re-reads this
# far back and prints only the lines it has not printed yet.
FOLLOW_OVERLAP = timedelta(seconds=60)
# The flow's own last line ("Finished in state Completed()"): after the final state, following
# goes on until it is in, or for at most this many seconds (a crashed process sends none).
FLOW_LAST_LINE = "Finished in state"
LAST_LINES_WAIT = 15.0


def _line(log: Log, names: dict[UUID, str]) -> str:
    where = names.get(log.task_run_id, "?") if log.task_run_id else "flow"
    level = LEVELS.get(log.level, str(log.level))
    stamp = log.timestamp.strftime("%H:%M:%S")
    return f"{stamp} {level:<7} {escape(where):<22} {escape(log.message)}"


def _read_since(client: SyncPrefectClient, run_id: UUID, after: datetime | None) -> list[Log]:
    """Every log line of the run stamped at or after ``after`` (all if None), oldest first."""
    flt = LogFilter(
        flow_run_id=LogFilterFlowRunId(any_=[run_id]),
        timestamp=LogFilterTimestamp(after_=after) if after is not None else None,
    )
    logs: list[Log] = []
    while True:
        batch = client.read_logs(
            log_filter=flt, limit=PAGE, offset=len(logs), sort=LogSort.TIMESTAMP_ASC
        )
        logs.extend(batch)
        if len(batch) < PAGE:
            return logs


def print_logs(
    client: SyncPrefectClient,
    run_id: UUID,
    console: Console,
    follow: bool = False,
    interval: float = 1.0,
) -> int:
    """Every log line of the run (its tasks' included), oldest first; with ``follow``, new
    lines as they arrive until the run is final and its last line is in. Returns how many
    lines were printed."""
    seen: dict[UUID, datetime] = {}
    names: dict[UUID, str] = {}
    newest: datetime | None = None
    told_pause: str | None = None
    printed = 0
    final_since: float | None = None
    flow_done = False
    while True:
        # The state before the lines: a run's last lines are shipped after its final state.
        run = client.read_flow_run(run_id) if follow else None
        after = newest - FOLLOW_OVERLAP if newest is not None else None
        for log in _read_since(client, run_id, after):
            if log.id in seen:
                continue
            seen[log.id] = log.timestamp
            if log.task_run_id is not None and log.task_run_id not in names:
                names = _task_names(client, run_id)
            console.print(_line(log, names))
            printed += 1
            newest = log.timestamp if newest is None else max(newest, log.timestamp)
            flow_done = flow_done or (
                log.task_run_id is None and log.message.startswith(FLOW_LAST_LINE)
            )
        if newest is not None:  # forget what the overlap no longer reaches
            seen = {k: t for k, t in seen.items() if t >= newest - 2 * FOLLOW_OVERLAP}
        if run is None:
            return printed
        if run.state is not None and run.state.is_final():
            final_since = final_since or time.monotonic()
            if flow_done or time.monotonic() - final_since > LAST_LINES_WAIT:
                return printed
        else:
            key = run.state.state_details.pause_key if run.state and run.state.is_paused() else None
            if key and key != told_pause:
                told_pause = key
                console.print(
                    f"[yellow]-- the run waits for operator input ({escape(key)}): answer it "
                    f"with `topup attach {escape(run.name)}` or in the Prefect UI --[/]"
                )
        time.sleep(interval)


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
