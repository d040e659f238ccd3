"""The submission ledger: every attempt at a real database submission, one row each.

Why a ledger: a ``-sub_switch 1`` cannot be undone, and whether it reached the database is
only known from its exit status. The row is written before the command starts and settled
after, so a crash leaves ``unknown`` behind for a person, never a silent second attempt.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import select

from store.db import session
from store.models import Submission, utcnow

OUTCOMES = ("submitted", "failed", "unknown")


def open_submission(
    *,
    round: str,
    part: str,
    run_from: int,
    run_to: int,
    runs: Sequence[int],
    dates: Sequence[str],
    flow_run_id: str,
    approved_by: str,
    dry_run_sha256: str,
    remote_key: str,
    resubmit_of: int | None = None,
    url: str | None = None,
) -> Submission:
    """The row of an attempt that is about to start (outcome ``unknown`` until settled).

    One row per (flow run, part, remote key): a resumed flow run that re-attaches to the same
    remote command finds its row instead of adding one.
    """
    with session(url) as s:
        row = s.exec(
            select(Submission).where(
                Submission.flow_run_id == flow_run_id,
                Submission.part == part,
                Submission.remote_key == remote_key,
            )
        ).first()
        if row is None:
            row = Submission(
                round=round,
                part=part,
                run_from=run_from,
                run_to=run_to,
                runs=list(runs),
                dates=list(dates),
                flow_run_id=flow_run_id,
                approved_by=approved_by[:64],
                dry_run_sha256=dry_run_sha256,
                remote_key=remote_key,
                resubmit_of=resubmit_of,
            )
            s.add(row)
            s.flush()
        s.expunge(row)
        return row


def settle(
    submission_id: int,
    outcome: str,
    *,
    exit_status: int | None = None,
    output: str = "",
    decided_by: str = "",
    note: str = "",
    url: str | None = None,
) -> Submission:
    """Record how an attempt ended (or what a person found out about it)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    with session(url) as s:
        row = s.get(Submission, submission_id)
        if row is None:
            raise LookupError(f"no submission #{submission_id}")
        row.outcome, row.exit_status = outcome, exit_status
        if output:
            row.output = output[-4000:]
        if decided_by:
            row.decided_by, row.note = decided_by[:64], note[:4000]
        row.ended_at = utcnow()
        s.add(row)
        s.flush()
        s.expunge(row)
        return row


def submissions(
    round: str | None = None,
    part: str | None = None,
    flow_run_id: str | None = None,
    url: str | None = None,
) -> list[Submission]:
    """Ledger rows, oldest first, filtered by round / part / flow run."""
    with session(url) as s:
        q = select(Submission)
        if round is not None:
            q = q.where(Submission.round == round)
        if part is not None:
            q = q.where(Submission.part == part)
        if flow_run_id is not None:
            q = q.where(Submission.flow_run_id == flow_run_id)
        rows = list(s.exec(q.order_by(Submission.id)))  # type: ignore[arg-type]
        for r in rows:
            s.expunge(r)
        return rows


def submitted_runs(round: str, part: str, url: str | None = None) -> dict[int, int]:
    """run -> id of the latest successful submission of ``part`` that carried it."""
    out: dict[int, int] = {}
    for row in submissions(round, part, url=url):
        if row.outcome == "submitted" and row.id is not None:
            for run in row.runs or range(row.run_from, row.run_to + 1):
                out[int(run)] = row.id
    return out
