"""Where the dates of a round stand, and the runs people excluded from its constants.

Step 0 reads it (a failed date is not "processed"), the gate before the reset writes what it
found, the submission reads it to know which runs of ``interval.txt`` belong to which date.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import select

from store.db import session
from store.models import DateRecord, RunExclusion, utcnow

# A run with one of these statuses may have written lines into the round's cumulative files
# that no person has looked at: the submission refuses their runs unless someone decides.
NOT_SUBMITTABLE = ("running", "failed", "unverified")


def mark_date(
    round: str,
    date: str,
    status: str,
    *,
    flow_run_id: str | None = None,
    workflow: str | None = None,
    message: str | None = None,
    runs: Sequence[int] | None = None,
    registered_runs: Sequence[int] | None = None,
    missing: Sequence[str] | None = None,
    accepted: Sequence[str] | None = None,
    accepted_by: str | None = None,
    reset_done: bool | None = None,
    url: str | None = None,
) -> DateRecord:
    """Create or update the date's record; only the given fields change."""
    with session(url) as s:
        row = s.get(DateRecord, (round, date))
        if row is None:
            row = DateRecord(round=round, date=date)
        row.status = status
        for name, value in (
            ("flow_run_id", flow_run_id),
            ("workflow", workflow),
            ("message", message[:4000] if message is not None else None),
            ("accepted_by", accepted_by),
            ("reset_done", reset_done),
        ):
            if value is not None:
                setattr(row, name, value)
        for name, values in (
            ("runs", runs),
            ("registered_runs", registered_runs),
            ("missing", missing),
            ("accepted", accepted),
        ):
            if values is not None:
                setattr(row, name, list(values))
        row.updated_at = utcnow()
        s.add(row)
        s.flush()
        s.expunge(row)
        return row


def date_record(round: str, date: str, url: str | None = None) -> DateRecord | None:
    with session(url) as s:
        row = s.get(DateRecord, (round, date))
        if row is not None:
            s.expunge(row)
        return row


def date_records(round: str, url: str | None = None) -> list[DateRecord]:
    with session(url) as s:
        rows = list(
            s.exec(select(DateRecord).where(DateRecord.round == round).order_by(DateRecord.date))  # type: ignore[arg-type]
        )
        for r in rows:
            s.expunge(r)
        return rows


def exclude_runs(
    round: str,
    runs: Sequence[int],
    *,
    date: str | None,
    reason: str,
    decided_by: str,
    note: str = "",
    flow_run_id: str = "",
    actions: dict[str, Any] | None = None,
    url: str | None = None,
) -> None:
    """Record that ``runs`` are out of the round's constants (idempotent per run)."""
    with session(url) as s:
        for run in runs:
            row = s.exec(
                select(RunExclusion).where(RunExclusion.round == round, RunExclusion.run == run)
            ).first()
            if row is None:
                row = RunExclusion(round=round, run=int(run), reason=reason)
            row.date, row.reason, row.decided_by = date, reason, decided_by[:64]
            row.note, row.flow_run_id = note[:4000], flow_run_id
            if actions is not None:
                row.actions = actions
            row.decided_at = utcnow()
            s.add(row)


def exclusions(round: str, url: str | None = None) -> list[RunExclusion]:
    with session(url) as s:
        rows = list(
            s.exec(
                select(RunExclusion).where(RunExclusion.round == round).order_by(RunExclusion.run)
            )  # type: ignore[arg-type]
        )
        for r in rows:
            s.expunge(r)
        return rows


def excluded_runs(round: str, url: str | None = None) -> set[int]:
    return {e.run for e in exclusions(round, url)}
