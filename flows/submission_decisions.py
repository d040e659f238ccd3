"""What a person decides about step 8's ledger rows (``store/ledger.py``).

A real submission whose outcome is unknown (it lost its exit status or its connection) is
settled by a person who checked the database: until then nothing of the round is submitted.
A failed one, or a range already submitted, is submitted again only when a person answers
"submit again" naming that very ledger row. Every answer is recorded with the person's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flows.operator import OperatorAbort, pause_key, who
from flows.submission_forms import ResubmitDecision, SettleDecision
from steps.step8_parts import PARTS
from store import ledger
from store.models import Submission

if TYPE_CHECKING:
    from flows.submission import Submitter


def row_text(row: Submission) -> str:
    """One ledger row as the operator reads it in a form."""
    return (
        f"#{row.id}: {row.part} runs {row.run_from}–{row.run_to}, flow run `{row.flow_run_id}`, "
        f"approved by {row.approved_by or '?'}, started {row.started_at:%Y-%m-%d %H:%M:%S}, "
        f"exit status {row.exit_status}, outcome **{row.outcome}**"
    )


def what_to_check(part: str, row: Submission) -> str:
    """What to look for in the offline database before answering about ``row``."""
    table = PARTS[part][0]
    return (
        f"Check in the offline database whether the {table} constants of runs "
        f"{row.run_from}–{row.run_to} are there (and how many rows), before you answer."
    )


def settle_unknown(sub: Submitter) -> None:
    """Earlier attempts of this round with no known outcome: a person checks first."""
    for row in ledger.submissions(sub.o.round):
        if row.outcome != "unknown" or row.flow_run_id == sub.o.run_key:
            continue
        sub.normal = False
        ask_settle(sub, row, reason="an earlier submission ended without a known outcome")


def ask_settle(sub: Submitter, row: Submission, reason: str) -> str:
    """A person checked the database: ``row`` was submitted, or failed (or they stop)."""
    answer = sub.p._ask(
        SettleDecision,
        key=pause_key("step8", "settle", row.id or 0),
        description=(
            f"## {reason}\n\n{row_text(row)}\n\nRemote output (tail):\n\n```\n"
            f"{row.output[-3000:]}\n```\n\n{what_to_check(row.part, row)}"
        ),
    )
    by = who(answer.name)
    if answer.submission_id != row.id:
        raise OperatorAbort(
            f"{by} answered about submission #{answer.submission_id}, not #{row.id}: "
            "nothing was decided; run the submission again to answer"
        )
    about = f"submission #{row.id}"
    sub.decided(
        "settle", answer.outcome, by, answer.note, about=about, at=f"while settling {about}"
    )
    assert row.id is not None
    ledger.settle(
        row.id, answer.outcome, exit_status=row.exit_status, decided_by=by, note=answer.note
    )
    return answer.outcome


def resubmit_answer(
    sub: Submitter, answer: ResubmitDecision, earlier: int, part: str
) -> str | None:
    """Who chose to submit again (naming ``earlier``), or None when they skip the part."""
    by = who(answer.name)
    about = f"{part}, about submission #{earlier}"
    sub.decided("resubmit", answer.decision, by, answer.note, about=about, at=f"at {part}")
    if answer.decision == "skip":
        return None
    if answer.earlier_submission != earlier:
        raise OperatorAbort(
            f"{by} chose to submit again but named submission #{answer.earlier_submission}, "
            f"not #{earlier}: nothing was submitted"
        )
    return by


def ask_failed(sub: Submitter, part: str, row: Submission, message: str) -> str | None:
    """A failed real submission: who chose to submit again (naming it), or None (skip)."""
    assert row.id is not None
    answer = sub.p._ask(
        ResubmitDecision,
        key=pause_key("step8", part, "failed", row.id),
        description=(
            f"## {part}: the real submission failed\n\n{row_text(row)}\n\n"
            f"`{message[:500]}`\n\nRemote output (tail):\n\n```\n{row.output[-3000:]}\n```"
            f"\n\n{what_to_check(part, row)}\n\nIt is not started again unless you "
            f"answer **submit_again** with earlier_submission = {row.id}."
        ),
    )
    return resubmit_answer(sub, answer, row.id, part)
