"""The forms step 8 pauses with: what a person answers about the range and the ledger.

The Prefect UI renders each as a form under a description of what happened; the facade
resumes with the same fields. The class names are the forms' titles: keep them.
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field


class RangeDecision(RunInput):
    """Runs of the range are not from verified dates: a person decides what happens."""

    decision: Literal["set_aside", "include", "abort"] = Field(
        description=(
            "set_aside: remove these runs' lines from the round's cumulative files and set "
            "their constant files aside (recorded); include: submit them anyway (recorded); "
            "abort: stop"
        )
    )
    name: str = Field(min_length=1, max_length=64, description="Who decides (recorded)")
    note: str = Field("", max_length=2000, description="Why (recorded)")


class SettleDecision(RunInput):
    """An earlier real submission ended without a known outcome."""

    outcome: Literal["submitted", "failed", "abort"] = Field(
        description=(
            "submitted: you checked the database and the rows are there; failed: you checked "
            "and they are not (a new submission may follow); abort: stop and check first"
        )
    )
    submission_id: int = Field(description="The ledger row you checked (#id shown above)")
    name: str = Field(min_length=1, max_length=64, description="Who checked (recorded)")
    note: str = Field("", max_length=2000, description="What you found (recorded)")


class ResubmitDecision(RunInput):
    """A real submission failed, or the range was submitted before: submit (again) or not."""

    decision: Literal["submit_again", "skip", "abort"] = Field(
        description="submit_again: start a new real submission; skip: not this part; abort"
    )
    earlier_submission: int = Field(description="The ledger row this decision is about (#id)")
    name: str = Field(min_length=1, max_length=64, description="Who decides (recorded)")
    note: str = Field("", max_length=2000, description="Why (recorded)")


def noted(text: str, note: str, sep: str = ": ") -> str:
    """``text``, followed by the note a person gave with their answer (when there is one)."""
    return text + (f"{sep}{note}" if note else "")
