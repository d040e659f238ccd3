"""Reads and idempotent writes of the outputs store.

Writes are upserts keyed by (flow run, task, path, role) for files and (flow run, task) for
step outcomes: a resumed or retried flow run records a cached step again without duplicates.
Plain values in, table rows out: the store does not know the step models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlmodel import select

from store.db import session
from store.models import (
    OperatorDecisionRow,
    RemoteCommand,
    StepOutput,
    StepRun,
    TranscriptSite,
    WorkflowRun,
    utcnow,
)


def start_workflow_run(
    *,
    flow_run_id: str,
    flow_name: str,
    workflow: str,
    version: str,
    date: str | None,
    round: str | None,
    parameters: dict[str, Any],
    url: str | None = None,
) -> None:
    """Create or refresh the run's row (a resumed run keeps its first start time)."""
    with session(url) as s:
        row = s.get(WorkflowRun, flow_run_id)
        if row is None:
            row = WorkflowRun(
                flow_run_id=flow_run_id,
                flow_name=flow_name,
                workflow=workflow,
                version=version,
                date=date,
                round=round,
                parameters=parameters,
            )
        else:
            row.workflow, row.version, row.parameters = workflow, version, parameters
            row.status, row.finished_at, row.message = "running", None, ""
        s.add(row)


def finish_workflow_run(
    flow_run_id: str, status: str, message: str = "", url: str | None = None
) -> None:
    with session(url) as s:
        row = s.get(WorkflowRun, flow_run_id)
        if row is not None:
            row.status, row.message, row.finished_at = status, message[:4000], utcnow()
            s.add(row)


def record_step(
    *,
    flow_run_id: str,
    step_id: str,
    task_name: str,
    label: str,
    outcome: str,
    message: str = "",
    error: dict[str, Any] | None = None,
    date: str | None = None,
    round: str | None = None,
    runs_complete: Sequence[int] = (),
    runs_incomplete: Sequence[int] = (),
    missing_required: Sequence[str] = (),
    data: dict[str, Any] | None = None,
    files: Iterable[dict[str, Any]] = (),
    url: str | None = None,
) -> None:
    """Upsert the step's outcome and its files in one transaction.

    ``files``: dicts with path, size, sha256, content_type, run, role, local_path.
    """
    with session(url) as s:
        row = s.exec(
            select(StepRun).where(
                StepRun.flow_run_id == flow_run_id, StepRun.task_name == task_name
            )
        ).first()
        if row is None:
            row = StepRun(
                flow_run_id=flow_run_id,
                task_name=task_name,
                step_id=step_id,
                label=label,
                outcome=outcome,
            )
        elif row.outcome != outcome or row.message != message:
            row.attempts += 1
        row.step_id, row.label, row.outcome, row.message = step_id, label, outcome, message
        row.error_code = error.get("code") if error else None
        row.error_name = error.get("name") if error else None
        row.action = error.get("action") if error else None
        row.date, row.round = date, round
        row.runs_complete, row.runs_incomplete = list(runs_complete), list(runs_incomplete)
        row.missing_required = list(missing_required)
        row.data = data or {}
        row.recorded_at = utcnow()
        s.add(row)

        existing = {
            (o.path, o.role): o
            for o in s.exec(
                select(StepOutput).where(
                    StepOutput.flow_run_id == flow_run_id, StepOutput.task_name == task_name
                )
            )
        }
        for f in files:
            out = existing.get((f["path"], f["role"]))
            if out is None:
                out = StepOutput(
                    flow_run_id=flow_run_id,
                    task_name=task_name,
                    step_id=step_id,
                    label=label,
                    path=f["path"],
                    role=f["role"],
                    name="",
                    size=0,
                    sha256="",
                    content_type="",
                )
                existing[(f["path"], f["role"])] = out
            out.name = f["path"].rstrip("/").rsplit("/", 1)[-1]
            out.size, out.sha256 = int(f["size"]), f["sha256"]
            out.content_type = f.get("content_type") or "application/octet-stream"
            out.run, out.local_path = f.get("run"), f.get("local_path")
            out.date, out.round, out.recorded_at = date, round, utcnow()
            s.add(out)


def record_decision(
    *,
    flow_run_id: str,
    step_id: str,
    kind: str,
    decision: str,
    decided_by: str = "",
    note: str = "",
    task_name: str | None = None,
    error_code: int | None = None,
    url: str | None = None,
) -> None:
    with session(url) as s:
        s.add(
            OperatorDecisionRow(
                flow_run_id=flow_run_id,
                step_id=step_id,
                task_name=task_name,
                kind=kind,
                decision=decision,
                decided_by=decided_by[:64],
                note=note[:4000],
                error_code=error_code,
            )
        )


# ----------------------------------------------------------------------------- reads


def workflow_run(flow_run_id: str, url: str | None = None) -> WorkflowRun | None:
    with session(url) as s:
        row = s.get(WorkflowRun, flow_run_id)
        if row is not None:
            s.expunge(row)
        return row


def outputs(
    flow_run_id: str, step_id: str | None = None, url: str | None = None
) -> list[StepOutput]:
    """Files of a flow run (optionally of one step), in recording order."""
    with session(url) as s:
        q = select(StepOutput).where(StepOutput.flow_run_id == flow_run_id)
        if step_id is not None:
            q = q.where(StepOutput.step_id == step_id)
        rows = list(s.exec(q.order_by(StepOutput.id)))  # type: ignore[arg-type]
        for r in rows:
            s.expunge(r)
        return rows


def step_runs(flow_run_id: str, url: str | None = None) -> list[StepRun]:
    with session(url) as s:
        q = select(StepRun).where(StepRun.flow_run_id == flow_run_id).order_by(StepRun.id)  # type: ignore[arg-type]
        rows = list(s.exec(q))
        for r in rows:
            s.expunge(r)
        return rows


def decisions(flow_run_id: str, url: str | None = None) -> list[OperatorDecisionRow]:
    with session(url) as s:
        q = (
            select(OperatorDecisionRow)
            .where(OperatorDecisionRow.flow_run_id == flow_run_id)
            .order_by(OperatorDecisionRow.id)  # type: ignore[arg-type]
        )
        rows = list(s.exec(q))
        for r in rows:
            s.expunge(r)
        return rows


def latest_step_run(
    round: str,
    date: str,
    task_name: str,
    outcomes: Sequence[str] = ("success",),
    url: str | None = None,
) -> StepRun | None:
    """The newest record of ``task_name`` for a date, from any flow run (for steps a run
    skipped with ``start_at_step`` because an earlier run of the date did them)."""
    with session(url) as s:
        row = s.exec(
            select(StepRun)
            .where(
                StepRun.round == round,
                StepRun.date == date,
                StepRun.task_name == task_name,
                StepRun.outcome.in_(list(outcomes)),  # type: ignore[attr-defined]
            )
            .order_by(StepRun.recorded_at.desc())  # type: ignore[attr-defined]
        ).first()
        if row is not None:
            s.expunge(row)
        return row


# ------------------------------------------------------------------------ transcript
def record_transcript_site(
    flow_run_id: str, site: str, login: str, paths: dict[str, str], url: str | None = None
) -> None:
    """Remember where a run's commands went (first call wins: a resumed run keeps it)."""
    with session(url) as s:
        if s.get(TranscriptSite, flow_run_id) is None:
            s.add(TranscriptSite(flow_run_id=flow_run_id, site=site, login=login, paths=paths))


def record_command(
    flow_run_id: str, step: str, values: dict[str, Any], url: str | None = None
) -> None:
    """Append one command to the run's transcript (``values``: RemoteCommand's columns)."""
    with session(url) as s:
        s.add(RemoteCommand(flow_run_id=flow_run_id, step=step, **values))


def transcript(flow_run_id: str, url: str | None = None) -> list[RemoteCommand]:
    """The run's commands in the order they were sent."""
    with session(url) as s:
        stmt = (
            select(RemoteCommand)
            .where(RemoteCommand.flow_run_id == flow_run_id)
            .order_by(RemoteCommand.id)  # type: ignore[arg-type]
        )
        rows = list(s.exec(stmt).all())
        for r in rows:
            s.expunge(r)
        return rows


def transcript_site(flow_run_id: str, url: str | None = None) -> TranscriptSite | None:
    with session(url) as s:
        row = s.get(TranscriptSite, flow_run_id)
        if row is not None:
            s.expunge(row)
        return row
