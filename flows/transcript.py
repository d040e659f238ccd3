"""The per-run transcript of remote commands: wire the remote layer's recorder to the store.

``steps.remote.transcript`` hands every command a ``RemoteSite`` sends to one recorder per
process; the one installed here finds the flow run and the task it belongs to in Prefect's
context (tasks run in threads that carry it) and appends a ``remote_commands`` row. Commands
sent outside a flow run (the CLI's doctor, tests) are not recorded. At the end of a run the
transcript also becomes a table artifact.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import TableArtifact
from prefect.context import FlowRunContext, TaskRunContext

from steps.remote import transcript
from steps.session import open_site
from store import repository

log = logging.getLogger("topup.flows")

ARTIFACT_ROWS = 2000
PATH_SETTINGS = (
    "topup_root",
    "data_root",
    "env_script",
    "container_cmd",
    "calib_const_root",
    "check_db_alg_dir",
    "control_dir",
)
_installed = threading.Lock()


def _record(record: transcript.CommandRecord) -> None:
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        return
    task_ctx = TaskRunContext.get()
    step = task_ctx.task.name if task_ctx is not None else ""
    values: dict[str, Any] = asdict(record)
    values["started_at"] = datetime.fromtimestamp(values.pop("started"), UTC)
    repository.record_command(str(flow_ctx.flow_run.id), step, values)


def install() -> None:
    """Record this process's remote commands into the store (idempotent)."""
    with _installed:
        transcript.set_recorder(_record)


def start(site: str, flow_run_id: str | None = None) -> None:
    """Install the recorder and remember the run's site and its remote base paths.

    Never fails the run: an unknown site fails the first step with a clear error anyway.
    """
    install()
    if flow_run_id is None:
        ctx = FlowRunContext.get()
        if ctx is None or ctx.flow_run is None:
            return
        flow_run_id = str(ctx.flow_run.id)
    try:
        settings = open_site(site).settings
    except Exception as exc:  # noqa: BLE001 - the first step reports it with its error code
        log.warning("transcript: site %r not resolved: %s", site, exc)
        return
    paths = {name: str(getattr(settings, name)) for name in PATH_SETTINGS}
    repository.record_transcript_site(flow_run_id, site, settings.login.host, paths)


def artifact_rows(flow_run_id: str) -> list[dict[str, Any]]:
    """One short row per command (the full text stays in the store: `topup transcript`)."""
    rows = []
    for c in repository.transcript(flow_run_id)[:ARTIFACT_ROWS]:
        first = c.what or c.text.split("\n", 1)[0]
        rows.append(
            {
                "step": c.step,
                "kind": c.kind,
                "command": first[:120],
                "cwd": c.cwd,
                "exit": "" if c.exit_code is None else c.exit_code,
                "error": c.error[:80],
                "seconds": round(c.duration, 3),
                "out_bytes": c.stdout_bytes,
                "err_bytes": c.stderr_bytes,
            }
        )
    return rows


def artifact(flow_run_id: str, key: str) -> TableArtifact | None:
    rows = artifact_rows(flow_run_id)
    if not rows:
        return None
    return TableArtifact(
        table=rows,
        key=key,
        description=f"Remote commands of this run ({len(rows)} shown; `topup transcript`)",
    )
